"""Gated PixelCNN Explorer: watch images render pixel by pixel, see the blind spot, read the likelihood.

    python app.py                       # http://127.0.0.1:7860, the models in weights/
    python app.py --port 8000 --share   # or GRADIO_SERVER_NAME / GRADIO_SERVER_PORT

The entry point only: the tabs live in `pixelcnn.ui`, every computation in the `pixelcnn` library.
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # runs offline: no telemetry calls

import torch  # noqa: E402

from pixelcnn.ui import launch  # noqa: E402

ROOT = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    parser.add_argument("--weights", type=Path, default=ROOT / "weights", help="folder of model folders")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per request (default 1: requests run in worker threads, where "
                             "multi-threaded OpenMP was several times slower on small CPUs; two requests "
                             "run at once)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, args.threads))
    launch(args.weights, args.host, args.port, args.share)


if __name__ == "__main__":
    main()
