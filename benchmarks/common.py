"""What the benchmark scripts share: the machine they ran on, and writing their JSON report."""

import json
import platform
from pathlib import Path

import torch


def write_report(path: Path, rows: list[dict], **settings) -> None:
    """Write rows and settings, with the software and machine, to `path` (atomically), and say so."""
    report = dict(torch=torch.__version__, python=platform.python_version(), machine=platform.machine(),
                  processor=platform.processor(), **settings, rows=rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
    print(f"\nwrote {path}")
