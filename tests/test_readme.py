"""The README and its pages tell the truth: their Python examples run, every command on the front page
runs verbatim on a fresh copy of the repository, and CI runs the test commands it gives."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def bash_commands(text: str) -> list[str]:
    """Every command line of the ```bash blocks."""
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S) for line in block.splitlines()]
    return [line.strip() for line in lines if line.strip()]


# runs each snippet in fresh globals, in one interpreter (one torch import for all), and names the one that fails
RUN_BLOCKS = """
import json, sys, traceback
for where, code in json.load(open(sys.argv[1])):
    try:
        exec(compile(code, where, "exec"), {"__name__": "__main__"})
    except BaseException:
        sys.exit(f"{where} failed:\\n{traceback.format_exc()}")
"""


def test_readme_and_docs_python_examples_run(tmp_path):
    blocks = [(f"{page.name}, example {k + 1}", code) for page in PAGES
              for k, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))]
    assert len(blocks) >= 3, "the pages have lost their Python examples"
    (tmp_path / "weights").symlink_to(ROOT / "weights")  # the snippets load the shipped weights as a user would
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    result = subprocess.run([sys.executable, "-c", RUN_BLOCKS, "blocks.json"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                                         "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_page_link_resolves():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to a missing {target}"


TEST_COMMANDS = ['pip install -e ".[test]" -c requirements.txt && python -m pytest', "python -m pytest -m slow"]
APP_COMMAND = 'pip install -e ".[app,faces]" && python app.py'
NOTEBOOK_COMMAND = "mkdir -p runs && papermill notebooks/00_blind_spot.ipynb runs/00-smoke.ipynb -p preset smoke"


def test_the_front_page_gives_exactly_these_commands_and_ci_runs_the_test_ones():
    assert bash_commands(README) == [APP_COMMAND, *TEST_COMMANDS, NOTEBOOK_COMMAND]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ci[-2:] == TEST_COMMANDS, "CI runs the README's test commands, verbatim, last"


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """The repository's tracked files (and new, unignored ones) copied as a fresh clone would have them."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    copy = tmp_path_factory.mktemp("clone")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).write_bytes(source.read_bytes())
    return copy


def test_the_notebook_command_runs_verbatim_on_a_fresh_copy(fresh_copy):
    pytest.importorskip("papermill")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(NOTEBOOK_COMMAND, shell=True, cwd=fresh_copy, capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (fresh_copy / "runs" / "00-smoke.ipynb").is_file()


def test_the_app_command_runs_verbatim_on_a_fresh_copy(fresh_copy, tmp_path):
    """In a virtual environment that sees this one's packages: `pip install -e ".[app,faces]"` installs the project
    itself, then `python app.py` serves the shipped weights."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_PORT": "7931"}
    env.pop("PYTHONPATH", None)
    log = (tmp_path / "app.log").open("wb")
    proc = subprocess.Popen(APP_COMMAND, shell=True, cwd=fresh_copy, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 420
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "app.log").read_text(errors="replace")[-3000:]
            try:
                page = urllib.request.urlopen("http://127.0.0.1:7931/", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("the app did not answer: " + (tmp_path / "app.log").read_text(errors="replace")[-3000:])
        assert "Gated PixelCNN Explorer" in page
        served = subprocess.run([str(venv / "bin" / "python"), "-c", "import pixelcnn; print(pixelcnn.__file__)"],
                                cwd=tmp_path, capture_output=True, text=True, env=env)
        assert served.stdout.startswith(str(fresh_copy)), "the venv runs the fresh copy it installed"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()
