"""python -m pixelcnn.experiments NAME ARGS...: run one experiment's command line (see the package)."""

import sys

from . import EXPERIMENTS


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in EXPERIMENTS:
        print(f"usage: python -m pixelcnn.experiments {{{','.join(sorted(EXPERIMENTS))}}} ARGS... "
              f"(--help after the name for its arguments)", file=sys.stderr)
        return 2
    return EXPERIMENTS[argv[0]].main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
