"""Every notebook in notebooks/ keeps ../shared/NOTEBOOKS.md's rules, runs, and grades.

* structure: title, Colab and Binder badges (URLs from ftkit.notebook), the Colab cell, a setup cell with the
  framework switch and a SIZES entry per profile, claims as assertions, a "What you saw" summary,
  2-4 nbgrader exercises with valid schema-3 metadata, public API only, no committed outputs;
* execution: the smoke profile under both frameworks (the assertion cells must hold), with every
  plotted axis labelled; in TensorFlow in notebooks/ (nothing may be written into tracked or un-ignored files),
  in PyTorch as the autograding of a course built by ``ftkit course build``;
* nbgrader: ``generate_assignment`` of all notebooks strips every solution, and each notebook's autograding
  gives its solutions full marks and its unanswered student version zero.
"""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ftkit.notebook

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NB_DIR.glob("*.ipynb"))

nbformat = pytest.importorskip("nbformat")


def load(name):
    return nbformat.read(NB_DIR / name, as_version=4)


def grading(cell):
    return cell.get("metadata", {}).get("nbgrader")


def exercises(nb):
    """(solution cells, graded test cells) of a notebook."""
    sols = [c for c in nb.cells if (grading(c) or {}).get("solution")]
    tests = [c for c in nb.cells if (grading(c) or {}).get("grade")]
    return sols, tests


# -- structure ----------------------------------------------------------------------------------------------

def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_committed_outputs(name):
    raw = json.loads((NB_DIR / name).read_text())
    for i, cell in enumerate(raw["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, \
                f"{name}: cell {i} has outputs or an execution count; clear them before committing"
    assert "widgets" not in raw["metadata"], f"{name}: notebook metadata holds saved widget state"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_first_cells_title_badge_colab_and_setup(name):
    nb = load(name)
    title, colab, setup = nb.cells[:3]
    assert title.cell_type == "markdown" and title.source.startswith("# "), f"{name}: no title first"
    assert ftkit.notebook.colab_badge(name) in title.source, \
        f"{name}: the first cell must carry ftkit.notebook.colab_badge({name!r})"
    assert ftkit.notebook.binder_badge(name) in title.source, \
        f"{name}: the first cell must carry ftkit.notebook.binder_badge({name!r})"
    assert colab.cell_type == "code" and colab.source == ftkit.notebook.colab_cell(), \
        f"{name}: the second cell must be exactly ftkit.notebook.colab_cell()"
    assert setup.cell_type == "code" and re.search(r'^FRAMEWORK = "(torch|tf)"', setup.source, re.M), \
        f"{name}: the setup cell must set FRAMEWORK = \"torch\" or \"tf\""
    assert "ftkit.notebook.setup(FRAMEWORK, SIZES)" in setup.source, f"{name}: setup must call ftkit.notebook.setup"
    sizes = next((n.value for n in ast.walk(ast.parse(setup.source)) if isinstance(n, ast.Assign)
                  and any(getattr(t, "id", None) == "SIZES" for t in n.targets)), None)
    assert isinstance(sizes, ast.Dict), f"{name}: SIZES must be a dict keyed by profile"
    keys = [k.value for k in sizes.keys]
    assert keys == list(ftkit.notebook.PROFILES), f"{name}: SIZES keys {keys}; expected smoke, cpu, full"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_claims_summary_and_public_api(name):
    nb = load(name)
    code = [c.source for c in nb.cells if c.cell_type == "code" and not grading(c)]
    assert any(re.search(r"^\s*assert ", src, re.M) for src in code), f"{name}: no claim is asserted"
    heads = [c.source for c in nb.cells if c.cell_type == "markdown"]
    text = "\n".join(heads)
    summary, ex = (re.search(rf"^## {h}", text, re.M) for h in ("What you saw", "Exercises"))
    assert summary and ex and summary.start() < ex.start(), \
        f"{name}: needs '## What you saw' before '## Exercises'"
    for c in nb.cells:
        if c.cell_type == "code":
            bad = re.findall(r"ftkit\.backends|ftkit(?:_widgets)?(?:\.\w+)*\._\w+|from ftkit\S* import _", c.source)
            assert not bad, f"{name}: uses private ftkit API {bad}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_exercises_are_valid_nbgrader_cells(name):
    nb = load(name)
    sols, tests = exercises(nb)
    assert 2 <= len(tests) <= 4, f"{name}: {len(tests)} graded exercises; give 2 to 4"
    assert len(sols) >= len(tests), f"{name}: each exercise needs a solution cell"
    ids = []
    for i, c in enumerate(nb.cells):
        meta = grading(c)
        if meta is None:
            continue
        where = f"{name}: cell {i}"
        assert meta.get("schema_version") == 3, f"{where}: nbgrader schema_version must be 3"
        if meta.get("grade") or meta.get("solution") or meta.get("locked"):
            assert meta.get("grade_id"), f"{where}: grade_id is required"
            ids.append(meta["grade_id"])
        if meta.get("grade"):
            assert c.cell_type == "code" and meta.get("points", 0) > 0 and meta.get("locked"), \
                f"{where}: a graded test cell is locked code with points > 0"
            assert re.search(r"^\s*assert ", c.source, re.M), f"{where}: a graded test cell asserts something"
        if meta.get("solution") and c.cell_type == "code":
            assert "### BEGIN SOLUTION" in c.source and "### END SOLUTION" in c.source, \
                f"{where}: put the answer between ### BEGIN SOLUTION and ### END SOLUTION"
    assert len(ids) == len(set(ids)), f"{name}: grade_ids must be unique: {ids}"


# -- nbgrader -----------------------------------------------------------------------------------------------

def nbgrader(*args, env=None, timeout=1800, cwd=None):
    # nbgrader runs `alembic` (its database migrations) from PATH: put this interpreter's bin/ first
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    r = subprocess.run([sys.executable, "-m", "nbgrader", *args], capture_output=True, text=True, cwd=cwd,
                       timeout=timeout, env={**os.environ, "PATH": path, **(env or {})})
    assert r.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def course(tmp_path, names):
    root = tmp_path / "course"
    (root / "source" / "ps1").mkdir(parents=True)
    for n in names:
        shutil.copy(NB_DIR / n, root / "source" / "ps1" / n)
    nbgrader("generate_assignment", "ps1", f"--CourseDirectory.root={root}", "--force")
    return root


def solution_lines(cell):
    src = cell.source
    body = src[src.index("### BEGIN SOLUTION") + len("### BEGIN SOLUTION"):src.index("### END SOLUTION")]
    return [line.strip() for line in body.splitlines() if len(line.strip()) > 12 and not line.strip().startswith("#")]


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks")
def test_generate_assignment_strips_every_solution(tmp_path):
    root = course(tmp_path, NOTEBOOKS)
    for name in NOTEBOOKS:
        source = load(name)
        released = nbformat.read(root / "release" / "ps1" / name, as_version=4)
        text = "\n".join(c.source for c in released.cells)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, f"{name}: solution markers left"
        answers = "\n".join(c.source for c in exercises(released)[0])   # what the student gets to fill in
        assert answers.count("raise NotImplementedError") >= len([c for c in exercises(source)[0]
                                                                  if c.cell_type == "code"]), name
        for c in exercises(source)[0]:
            if c.cell_type == "code":
                for line in solution_lines(c):
                    assert line not in answers, f"{name}: the released version still holds {line!r}"
        kept = [c.source for c in exercises(released)[1]]
        assert kept == [c.source for c in exercises(source)[1]], f"{name}: test cells must be released as they are"


# -- execution ----------------------------------------------------------------------------------------------

# Injected before the notebook's first cell (in memory only): at every plt.show() and after every cell, before the
# inline backend shows and closes the figures, note each drawn axis without an x or y label.
AXIS_CHECK = '''
import matplotlib
_FTKIT_UNLABELLED = []
def _ftkit_check_axes():
    import sys
    if "matplotlib.pyplot" not in sys.modules:
        return
    import matplotlib.pyplot as plt
    for num in plt.get_fignums():
        for ax in plt.figure(num).axes:
            if not ax.axison or ax.get_label() == "<colorbar>" or not ax.has_data():
                continue
            if not len(ax.get_xticks()) and not len(ax.get_yticks()):
                continue   # a picture (an image with its ticks removed), not a plot
            # a twin axis (twinx) hides the x axis it shares: only visible axes need a label
            if (ax.xaxis.get_visible() and not ax.get_xlabel()) or (ax.yaxis.get_visible() and not ax.get_ylabel()):
                _FTKIT_UNLABELLED.append(ax.get_title() or f"figure {num}")
get_ipython().events.register("post_execute", _ftkit_check_axes)
import matplotlib.pyplot as _ftkit_plt   # plt.show() displays and closes the figures: look at them first
_ftkit_show = _ftkit_plt.show
def _ftkit_checked_show(*args, **kwargs):
    _ftkit_check_axes()
    return _ftkit_show(*args, **kwargs)
_ftkit_plt.show = _ftkit_checked_show
'''
AXIS_ASSERT = ('assert not _FTKIT_UNLABELLED, '
               '"axes without an x or y label (title or figure): " + repr(_FTKIT_UNLABELLED)')


def git_status():
    r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    return set(r.stdout.splitlines()) if r.returncode == 0 else None


def autograde(root, assignment):
    """``nbgrader autograde`` every submission of ``assignment`` in the course folder, as INSTRUCTORS.md says
    (smoke profile, PyTorch); {student: (score, max score, the autograded notebook)}."""
    env = {"FTKIT_PROFILE": "smoke", "FTKIT_FRAMEWORK": "torch", "HF_HUB_OFFLINE": "1",
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    nbgrader("autograde", assignment, "--create", "--force", env=env, cwd=root)   # in the course folder
    from nbgrader.api import Gradebook
    scores = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for student in os.listdir(root / "submitted"):
            graded = gb.find_submission_notebook(assignment, assignment, student)
            done = nbformat.read(root / "autograded" / student / assignment / f"{assignment}.ipynb", as_version=4)
            scores[student] = graded.score, graded.max_score, done
    return scores


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_autogrades_in_torch(name, tmp_path):
    """The PyTorch smoke run of every notebook is its autograding in a course built by ``ftkit course build``:
    the committed version (the solutions, plus the axis check) runs without an error in any cell and gets full
    marks; the released student version, unanswered, gets zero points on the graded cells without crashing."""
    from ftkit.course import build_course
    root = tmp_path / "course"
    assignment, = build_course(root, [name])
    solutions = load(name)   # a student may add cells: nbgrader grades only its own
    solutions.cells.insert(0, nbformat.v4.new_code_cell(AXIS_CHECK))
    solutions.cells.append(nbformat.v4.new_code_cell(AXIS_ASSERT))
    blank = nbformat.read(root / "release" / assignment / name, as_version=4)
    for student, nb in (("solutions", solutions), ("blank", blank)):
        (root / "submitted" / student / assignment).mkdir(parents=True)
        nbformat.write(nb, root / "submitted" / student / assignment / name)
    t0 = time.perf_counter()
    scores = autograde(root, assignment)
    print(f"{name} [torch, solutions and blank]: {time.perf_counter() - t0:.0f} s")
    score, top, done = scores["solutions"]
    errors = [(i, o.get("ename"), o.get("evalue", "")[:300]) for i, c in enumerate(done.cells)
              if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{name}: cells failed in the smoke profile (index, error, message): {errors}"
    setup_out = "".join(o.get("text", "") for o in done.cells[3].outputs)
    assert "framework: torch" in setup_out and "profile: smoke" in setup_out, setup_out
    assert top > 0 and score == top, f"{name}: the solutions scored {score} of {top}"
    score, top, _ = scores["blank"]
    assert score == 0, f"{name}: the unanswered student version scored {score} of {top}"


# PyTorch's smoke run is the autograding above; TensorFlow's runs here, in notebooks/ as JupyterLab would.
@pytest.mark.parametrize("framework", ["tf"])
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_the_smoke_profile(name, framework, monkeypatch):
    pytest.importorskip("nbclient")
    from nbclient import NotebookClient
    monkeypatch.setenv("FTKIT_PROFILE", "smoke")
    monkeypatch.setenv("FTKIT_FRAMEWORK", framework)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = load(name)
    nb.cells.insert(0, nbformat.v4.new_code_cell(AXIS_CHECK))
    nb.cells.append(nbformat.v4.new_code_cell(AXIS_ASSERT))
    before = git_status()
    t0 = time.perf_counter()
    # as JupyterLab runs it: the kernel's working directory is notebooks/
    NotebookClient(nb, kernel_name="python3", timeout=900, resources={"metadata": {"path": str(NB_DIR)}}).execute()
    print(f"{name} [{framework}]: {time.perf_counter() - t0:.0f} s")
    setup_out = "".join(o.get("text", "") for o in nb.cells[3].outputs)
    assert f"framework: {framework}" in setup_out and "profile: smoke" in setup_out, setup_out
    if before is not None:
        new = sorted(git_status() - before)
        assert not new, f"running {name} wrote into tracked or un-ignored files: {new}"
