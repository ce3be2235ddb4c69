"""The ftkit wheel: built from a copy of the source, installed with ``--no-deps`` into a fresh venv that reuses
the locked packages (this venv's, minus ftkit itself), and used from outside the repository.

* ``import ftkit`` and ``import ftkit_widgets`` come from the wheel, and both report the single-sourced version;
* the widgets' front-end assets (``ftkit_widgets/static/``) are inside the wheel, and the LayerMap loads them;
* ``pip install ftkit[torch]``, ``ftkit[tf]`` and ``ftkit[widgets]`` resolve from the wheel against the locked
  packages alone (``--no-index``: every range the extras declare is met by the lock, nothing else is fetched);
* the ``ftkit`` command works.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("wheel")


def run(*args, cwd=None, timeout=600):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert r.returncode == 0, f"{' '.join(map(str, args))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(the wheel, a fresh venv with it installed --no-deps over the locked packages)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"   # build from a copy: building in the checkout would write build/ and *.egg-info there
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    for pkg in ("ftkit", "widgets"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src)
    wheel, = (tmp / "dist").glob("ftkit-*.whl")

    # the locked packages, as one folder of links to this venv's site-packages without ftkit's own entries
    here = Path(sysconfig.get_paths()["purelib"])
    locked = tmp / "locked"
    locked.mkdir()
    for entry in here.iterdir():
        low = entry.name.lower()
        if low.startswith(("ftkit", "__editable__")) or low.endswith(".pth"):
            continue
        (locked / entry.name).symlink_to(entry)
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    site = Path(run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site / "locked.pth").write_text(f"{locked}\n")
    run(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", wheel)
    return wheel, venv


def test_the_wheel_holds_both_packages_and_the_widget_assets(built):
    wheel, _ = built
    names = zipfile.ZipFile(wheel).namelist()
    for path in ("ftkit/__init__.py", "ftkit/backends/torch/models.py", "ftkit/backends/tf/models.py",
                 "ftkit/tasks/captioning.py", "ftkit_widgets/panel.py",
                 "ftkit_widgets/static/layermap.js", "ftkit_widgets/static/layermap.css"):
        assert path in names, f"{path} is not in {wheel.name}"
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "benchmarks/"))]


def test_the_installed_wheel_imports_with_one_version_and_finds_its_assets(built, tmp_path):
    _, venv = built
    code = """
import importlib.metadata, pathlib, sys
import ftkit, ftkit_widgets
from ftkit_widgets.layermap import LayerMap, ESM, CSS
venv = pathlib.Path(sys.prefix).resolve()
for mod in (ftkit, ftkit_widgets):
    assert venv in pathlib.Path(mod.__file__).resolve().parents, (mod.__name__, mod.__file__, venv)
assert importlib.metadata.version("ftkit") == ftkit.__version__ == ftkit_widgets.__version__
assert ESM.is_file() and CSS.is_file() and venv in ESM.resolve().parents
widget = LayerMap()
assert widget._esm == ESM.read_text() and "export default" in widget._esm and widget._css == CSS.read_text()
print("version", ftkit.__version__)
"""
    out = run(venv / "bin" / "python", "-c", code, cwd=tmp_path)
    assert out.startswith("version ")
    assert "ftkit" in run(venv / "bin" / "ftkit", "--help", cwd=tmp_path)


@pytest.mark.parametrize("extra", ["torch", "tf", "widgets"])
def test_each_extra_resolves_from_the_wheel_against_the_locked_packages(built, extra, tmp_path):
    wheel, venv = built
    report = tmp_path / "report.json"
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--dry-run", "--no-index",
        "--find-links", wheel.parent, "--report", report, f"ftkit[{extra}]")
    import json
    would = [i["metadata"]["name"] for i in json.loads(report.read_text())["install"]]
    # ftkit is installed already; everything its extra asks for is locked: nothing else to fetch
    assert would == [], f"ftkit[{extra}] would install {would}"
