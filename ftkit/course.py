"""An nbgrader course built from ftkit's notebooks: ``ftkit course build DIR``.

Each notebook becomes one assignment, named after it (``01_scratch_vs_transfer``):

* ``DIR/source/<assignment>/<notebook>.ipynb``: the instructor's version, as committed (solutions included);
* ``DIR/release/<assignment>/<notebook>.ipynb``: the students' version, made by ``nbgrader generate_assignment``
  (every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` replaced by ``raise NotImplementedError``, hidden tests
  removed, test cells locked);
* ``DIR/nbgrader_config.py`` and ``DIR/INSTRUCTORS.md`` (how to assign, collect and autograde).

An existing ``DIR`` is refused unless ``force=True`` (``--force``): a course folder holds students' submissions
and grades, which a rebuild must not overwrite by accident.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import ConfigError

INSTRUCTORS = """# Teaching with the ftkit notebooks

This folder is an [nbgrader](https://nbgrader.readthedocs.io) course, built by `ftkit course build`. Each notebook
is one assignment named after it; its exercises have solution cells (`### BEGIN SOLUTION` ... `### END SOLUTION`)
and locked, autograded test cells with points.

- `source/<assignment>/`: your version, with the solutions. Edit here, then rebuild the students' version:
  `nbgrader generate_assignment <assignment> --force`.
- `release/<assignment>/`: the students' version: solutions replaced by `raise NotImplementedError`, hidden tests
  removed. Give them this notebook (your LMS, a shared drive, or `nbgrader release_assignment` on a JupyterHub).

## Assign, collect, grade (run these in this folder)
1. Give the students `release/<assignment>/<notebook>.ipynb`. They need the kit: `make lab` in a clone of ftkit,
   Binder or Colab (see the README); the notebooks pick the `cpu` profile without a GPU.
2. Collect each submission as `submitted/<student id>/<assignment>/<notebook>.ipynb`
   (`nbgrader collect <assignment>` on a JupyterHub does this).
3. Autograde: `FTKIT_PROFILE=smoke nbgrader autograde <assignment> --create --force`. The `smoke` profile runs
   every training cell at its smallest size, so grading a notebook takes a minute or two, not the cpu profile's
   minutes; the exercises' tests do not depend on the profile's sizes.
4. Scores: `nbgrader export` writes `grades.csv`; `nbgrader formgrade` (JupyterLab's Formgrader) shows each answer.
5. Feedback: `nbgrader generate_feedback <assignment>`.

An answer that leaves `raise NotImplementedError` in place scores 0 on that exercise; a notebook that fails in
a cell outside the exercises stops autograding there, so check such submissions by hand.
"""


CONFIG = """c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "ftkit"
# a cell may train for minutes in the cpu profile (nbgrader's default is 30 s, then the cell fails)
c.Execute.timeout = 1800
"""


def notebooks_folder():
    """The ``notebooks/`` folder of the ftkit checkout this package runs from."""
    folder = Path(__file__).resolve().parents[1] / "notebooks"
    if not folder.is_dir():
        raise ConfigError(f"no notebooks folder at {folder}: the course is built from a clone of the ftkit repository "
                          "(the notebooks are not in the installed package); pass notebooks=PATH")
    return folder


def build_course(folder, notebooks=None, *, source=None, force=False):
    """Build the nbgrader course in ``folder`` (see the module docstring) from ``notebooks`` (file names in
    ``source``, default every notebook of the checkout); returns the assignment names."""
    source = Path(source) if source is not None else notebooks_folder()
    names = sorted(p.name for p in source.glob("*.ipynb")) if notebooks is None else list(notebooks)
    missing = [n for n in names if not (source / n).is_file()]
    if missing or not names:
        raise ConfigError(f"notebooks={missing or names!r}: not found in {source}; choose from "
                          f"{', '.join(sorted(p.name for p in source.glob('*.ipynb')))}")
    if importlib.util.find_spec("nbgrader") is None:
        raise ConfigError("ftkit course build needs nbgrader, which is not installed: pip install 'ftkit[course]' "
                          "(make venv installs it)")
    root = Path(folder)
    if root.exists():
        if not force:
            raise ConfigError(f"{root} already exists (it may hold submissions and grades); choose a new folder, "
                              "or pass --force to rebuild source/ and release/ in it")
        for sub in ("source", "release"):
            shutil.rmtree(root / sub, ignore_errors=True)
    assignments = []
    for name in names:
        assignment = Path(name).stem
        (root / "source" / assignment).mkdir(parents=True)
        shutil.copy(source / name, root / "source" / assignment / name)
        assignments.append(assignment)
    (root / "nbgrader_config.py").write_text(CONFIG)
    (root / "INSTRUCTORS.md").write_text(INSTRUCTORS)
    for assignment in assignments:
        _nbgrader("generate_assignment", assignment, f"--CourseDirectory.root={root}", "--force")
    return assignments


def _nbgrader(*args):
    """Run nbgrader with this interpreter (its database migrations call ``alembic`` from PATH: this venv's first)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    r = subprocess.run([sys.executable, "-m", "nbgrader", *args], capture_output=True, text=True,
                       env={**os.environ, "PATH": path})
    if r.returncode:
        raise ConfigError(f"nbgrader {' '.join(args)} failed:\n{(r.stdout + r.stderr)[-2000:]}")
