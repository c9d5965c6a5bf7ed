"""Face detection time: `DlibFaceEmbedder.embed` on the photos the app must handle, one thread.

    python benchmarks/faces.py [--repeats 3] [--only 42-px] [--out benchmarks/results/faces.json]

The large photos are made here: a noisy gradient with the astronaut's face pasted at about 42 or
70 pixels (as in tests/test_faces.py); the others are tests/data/faces/. Faces from about 40 pixels
must be found in photos up to 12 megapixels within 3 s on one core.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import write_report  # noqa: E402
from pixelcnn.faces import DlibFaceEmbedder, NoFaceError  # noqa: E402

PHOTOS = ROOT / "tests" / "data" / "faces"


def photo_with_face(width: int, height: int, face_px: int) -> Image.Image:
    """A noisy gradient of width x height with the astronaut's face pasted at about face_px pixels."""
    astronaut = Image.open(PHOTOS / "astronaut.jpg").convert("RGB")
    rng = np.random.default_rng(0)
    background = (np.linspace(60, 200, width)[None, :, None] * np.ones((height, 1, 3))
                  + rng.normal(0, 12, (height, width, 3)))
    photo = Image.fromarray(background.clip(0, 255).astype(np.uint8))
    if face_px:  # the crop's face is about 60% of its width
        side = round(face_px / 0.6)
        photo.paste(astronaut.crop((150, 40, 300, 210)).resize((side, round(side * 170 / 150)), Image.LANCZOS),
                    (width * 2 // 3, height * 3 // 5))
    return photo


def photos() -> dict[str, Image.Image]:
    astronaut = Image.open(PHOTOS / "astronaut.jpg").convert("RGB")
    return {"astronaut 512x512": astronaut, "camera 512x512 (grey)": Image.open(PHOTOS / "camera.png"),
            "42-px face in 3000x2000": photo_with_face(3000, 2000, 42),
            "42-px face in 4000x3000": photo_with_face(4000, 3000, 42),
            "70-px face in 4000x3000": photo_with_face(4000, 3000, 70),
            "no face, 4000x3000": photo_with_face(4000, 3000, 0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=None, help="time only the photos whose names contain one of these")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "faces.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    embedder = DlibFaceEmbedder()
    rows = []
    print("| photo | faces found | notices | seconds (median) |\n|---|---|---|---|")
    for name, photo in photos().items():
        if args.only and not any(part in name for part in args.only):
            continue
        times, found, notices = [], 0, ""
        for _ in range(args.repeats):
            start = time.process_time()  # CPU time of this one thread: another job on the machine does not count
            try:
                face = embedder.embed(photo)
                found, notices = face.faces_found, "; ".join(face.notices)
            except NoFaceError:
                found, notices = 0, "no face found"
            times.append(time.process_time() - start)
        rows.append({"photo": name, "faces_found": found, "notices": notices, "seconds": statistics.median(times)})
        print(f"| {name} | {found} | {notices or '-'} | {statistics.median(times):.2f} |")
    write_report(args.out, rows, repeats=args.repeats, threads=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
