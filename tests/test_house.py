"""The library's shape, as the README's map promises it: small modules and functions, a core that never
imports upward, registries that fill themselves, and shipped folders that load in a fresh process."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pixelcnn"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# the core: the paper's model and its sampling; it stands on its own
CORE = ("layers", "shapes", "codecs", "config", "conditioning", "model", "sampling", "images")
# what sits above the core: training, measurement, data sources and the app
ABOVE_CORE = ("train", "presets", "cards", "surgery", "runtime", "notebook", "experiments", "data", "face_data",
              "faces", "classifier", "autoencoder", "sketch", "receptive_field", "ui")


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every pixelcnn module a file imports, at the top or inside a function, as a dotted name under pixelcnn
    (`root`: the folder that holds the package)."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{alias.name}" for alias in node.names] if not node.module else []
            found.update([target, *names])
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("pixelcnn")}


def test_no_module_is_over_500_lines_and_no_function_over_60():
    long_modules = {str(p.relative_to(ROOT)): n for p in modules()
                    if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    long_functions = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    assert not long_modules and not long_functions, (long_modules, long_functions)


@pytest.mark.parametrize("core", CORE)
def test_the_core_imports_nothing_from_above_not_even_late(core):
    above = {f"pixelcnn.{name}" for name in ABOVE_CORE}
    reached = {name for name in imported_modules(PACKAGE / f"{core}.py")
               if any(name == a or name.startswith(a + ".") for a in above)}
    assert not reached, f"pixelcnn/{core}.py imports {sorted(reached)}"


def test_hub_reaches_into_no_model_class():
    assert imported_modules(PACKAGE / "hub.py") == set()


def test_the_import_checker_sees_late_and_relative_imports(tmp_path):
    """The check above is not vacuous: a late relative import of the trainer is caught."""
    fake = tmp_path / "pixelcnn" / "_probe_for_test.py"
    fake.parent.mkdir()
    fake.write_text("def f():\n    from .train import main\n    from . import ui\n")
    assert {"pixelcnn.train", "pixelcnn.ui"} <= imported_modules(fake, tmp_path)


def test_no_registry_is_filled_by_import_module():
    users = [str(p.relative_to(ROOT)) for p in modules() if "import_module" in p.read_text()]
    assert not users


SHIPPED = sorted(str(p.parent.relative_to(ROOT)) for p in (ROOT / "weights").rglob("config.json"))


def test_every_shipped_folder_and_part_loads_in_a_fresh_process():
    """No import beyond `pixelcnn` itself: the saved classes registered themselves."""
    assert len(SHIPPED) >= 16 and "weights/mnist-class/classifier" in SHIPPED
    script = ("import sys, pixelcnn\n"
              "for path in sys.argv[1:]:\n"
              "    print(path, type(pixelcnn.from_pretrained(path)).__name__)\n")
    done = subprocess.run([sys.executable, "-c", script, *SHIPPED], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = dict(line.split() for line in done.stdout.splitlines())
    assert set(loaded) == set(SHIPPED) and loaded["weights/mnist-class/classifier"] == "DigitClassifier"


def test_derived_datasets_and_card_sections_register_themselves():
    import pixelcnn.experiments  # noqa: F401  (registers the experiments' card sections)
    from pixelcnn.cards import CARD_SECTIONS, DATA_TERMS
    from pixelcnn.data import DERIVED_DATASETS

    assert {"celeba-portraits", "celeba-faces32", "celeba-faces32+64"} <= set(DERIVED_DATASETS)
    assert {"test_mse", "autoencoder", "recognised", "portraits", "conditioning_comparison"} <= set(CARD_SECTIONS)
    assert "celeba-" in DATA_TERMS


def test_a_card_refuses_a_measurement_without_a_section():
    from pixelcnn.cards import card_extras

    with pytest.raises(KeyError, match="no card section"):
        card_extras({"test_bpd": 1.0, "unheard_of": {}})


def test_importing_the_app_writes_nothing_into_the_package():
    """Gradio writes a .pyi stub beside any module that subclasses one of its components."""
    import pixelcnn.ui  # noqa: F401
    import pixelcnn.ui.app  # noqa: F401

    assert not list(PACKAGE.rglob("*.pyi"))


def test_the_library_loads_and_samples_without_the_app_and_faces_extras():
    """`import pixelcnn`, `from_pretrained` and sampling need neither gradio nor dlib (the `app` and
    `faces` extras): here both are made impossible to import, in a fresh process."""
    script = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("gradio", "dlib", "face_recognition_models"):
            raise ImportError(f"{name} is not installed")

sys.meta_path.insert(0, NotInstalled())
import pixelcnn, pixelcnn.faces, pixelcnn.train
model = pixelcnn.from_pretrained("weights/mnist-class")
print("sampled", tuple(pixelcnn.sample(model, 1, 3, seed=0).shape))
try:
    import gradio
except ImportError:
    print("gradio blocked")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "sampled (1, 1, 28, 28)" in done.stdout and "gradio blocked" in done.stdout, done.stderr[-2000:]


def test_the_package_needs_only_the_library_and_puts_the_rest_in_extras():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "torch>=" in core and "==" not in core  # a tested range, not one version
    assert not any(name in core for name in ("gradio", "dlib", "face_recognition", "papermill", "jupyter"))
    extras = project["optional-dependencies"]
    assert {"app", "faces", "notebooks", "test"} <= set(extras)
    assert any("gradio" in d for d in extras["app"]) and any("dlib" in d for d in extras["faces"])
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text()  # what CI tests, as constraints
