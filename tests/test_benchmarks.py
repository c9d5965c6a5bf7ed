"""The benchmark scripts keep running (timings are measured by them, not asserted here)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sampling_benchmark_runs_and_writes_json(tmp_path):
    out = tmp_path / "sampling.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sampling.py"), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {(r["preset"], r["batch"]) for r in rows} == {(p, b) for p in ("smoke-grey", "smoke-rgb") for b in (1, 16)}
    for row in rows:
        assert row["cached_s"] > 0 and row["naive_s"] > 0 and row["speedup"] == row["naive_s"] / row["cached_s"]
        assert row["guided_s"] > 0 and row["guided_over_cached"] == row["guided_s"] / row["cached_s"]
    assert "| speed-up |" in result.stdout and "| guided / cached |" in result.stdout


def test_train_benchmark_runs_and_writes_json(tmp_path):
    out = tmp_path / "train.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train.py"), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert [r["image"] for r in report["rows"]] == ["1x6x6", "3x6x6"]
    assert all(r["images_per_s"] > 0 and r["gflop_per_step"] > 0 for r in report["rows"])
    assert report["matmul_peak_gflops"] > 0


def test_face_benchmark_runs_and_writes_json(tmp_path):
    out = tmp_path / "faces.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "faces.py"), "--repeats", "1", "--only",
                             "astronaut", "42-px face in 3000x2000", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = {r["photo"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"astronaut 512x512", "42-px face in 3000x2000"}  # --only: the rest are minutes of HOG
    assert rows["42-px face in 3000x2000"]["faces_found"] == 1 and rows["astronaut 512x512"]["faces_found"] == 1
    assert all(r["seconds"] > 0 for r in rows.values())
