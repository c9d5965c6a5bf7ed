"""Every notebook runs at its smoke preset, calls the library only, and declares its presets."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PRESETS = ("smoke", "cpu", "gpu", "paper")


def code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_first_code_cell_is_the_parameters_with_four_presets(path):
    first = code_cells(path)[0]
    assert "parameters" in first["metadata"].get("tags", [])
    source = "".join(first["source"])
    assert re.search(r'^preset = "(smoke|cpu|gpu|paper)"', source, flags=re.M)
    from pixelcnn.presets import NOTEBOOK_SETTINGS

    body = "".join("".join(c["source"]) for c in code_cells(path)[1:3])
    assert f'setup("{path.stem}", preset, ROOT)' in body, "the set-up comes from pixelcnn.notebook"
    assert tuple(NOTEBOOK_SETTINGS[path.stem]) == PRESETS, "its settings, in pixelcnn.presets, name all four presets"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_copies_a_helper_or_its_settings(path):
    source = "".join("".join(c["source"]) for c in code_cells(path))
    assert not re.search(r"^def (curves|gpu_flags)\b", source, flags=re.M), "helpers come from pixelcnn.notebook"
    assert "SETTINGS = {" not in source and "os.chdir" not in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_defines_model_code_or_leaks_a_path(path):
    for cell in code_cells(path):
        source = "".join(cell["source"])
        assert not re.search(r"\bclass\s+\w+\s*\(.*(nn\.Module|Module)\b", source), "model code belongs in pixelcnn/"
        assert "nn.Module" not in source and "import torch.nn" not in source
    text = path.read_text()
    assert "/root/" not in text and "/home/" not in text and "/work/" not in text, "an absolute path in an output"


@pytest.mark.slow  # two minutes for the seven; the quick run executes one (tests/test_readme.py)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_smoke_preset_runs(path, tmp_path):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / path.name
    papermill.execute_notebook(str(path), str(out), parameters={"preset": "smoke", "out_dir": str(tmp_path / "runs")},
                               cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    executed = json.loads(out.read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


JUPYTER_WITHOUT_IPYWIDGETS = """
import sys, types, warnings
sys.modules["ipywidgets"] = None  # the notebooks extra is not installed
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")  # tqdm.auto's sign of a Jupyter kernel
import IPython

class KernelShell:
    config = {"IPKernelApp": {}}
    custom_exceptions = ()

    def set_custom_exc(self, *args):
        pass

IPython.get_ipython = KernelShell
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import pixelcnn.train  # noqa: F401  (imports the hub and, later, tqdm.auto)
    from tqdm.auto import tqdm  # noqa: F401
print([str(w.message) for w in caught if "IProgress" in str(w.message)])
"""


def test_importing_the_library_in_a_kernel_without_ipywidgets_prints_no_warning():
    # the warning carries tqdm's absolute path into a notebook's saved outputs
    done = subprocess.run([sys.executable, "-c", JUPYTER_WITHOUT_IPYWIDGETS], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
