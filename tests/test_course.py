"""``ftkit course build DIR``: an nbgrader course made from the notebooks (ftkit.course).

tests/test_notebooks.py builds every notebook into such a course and autogrades it as INSTRUCTORS.md says.
"""
import sys

import nbformat
import pytest

from ftkit.cli import main

NOTEBOOKS = ["01_scratch_vs_transfer.ipynb", "24_translation.ipynb"]


def _exercises(nb):
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    return answers, graded


def test_a_course_is_built_with_the_solutions_stripped_from_the_students_version(tmp_path, capsys):
    root = tmp_path / "course"
    assert main(["course", "build", str(root), "--notebooks", *NOTEBOOKS]) == 0
    assert "2 assignments" in capsys.readouterr().out
    assert "autograde" in (root / "INSTRUCTORS.md").read_text()
    for name in NOTEBOOKS:
        stem = name[:-len(".ipynb")]
        source = nbformat.read(root / "source" / stem / name, as_version=4)
        released = nbformat.read(root / "release" / stem / name, as_version=4)
        answers, graded = _exercises(released)
        assert "### BEGIN SOLUTION" in "\n".join(c.source for c in _exercises(source)[0])   # the instructor's
        assert all("BEGIN SOLUTION" not in c.source for c in released.cells)
        assert sum("raise NotImplementedError" in c.source for c in answers) >= 2
        assert [c.source for c in graded] == [c.source for c in _exercises(source)[1]]


def test_an_existing_course_folder_is_never_overwritten_without_force(tmp_path, capsys):
    root = tmp_path / "course"
    submission = root / "submitted" / "ana" / "01_scratch_vs_transfer" / "01_scratch_vs_transfer.ipynb"
    submission.parent.mkdir(parents=True)
    submission.write_text("a student's work")
    assert main(["course", "build", str(root), "--notebooks", NOTEBOOKS[0]]) == 2
    assert "already exists" in capsys.readouterr().err and not (root / "release").exists()
    assert main(["course", "build", str(root), "--notebooks", NOTEBOOKS[0], "--force"]) == 0
    assert (root / "release" / "01_scratch_vs_transfer" / NOTEBOOKS[0]).is_file()
    assert submission.read_text() == "a student's work"   # --force rebuilds source/ and release/ only


def test_an_unknown_notebook_is_refused_before_anything_is_written(tmp_path, capsys):
    assert main(["course", "build", str(tmp_path / "c"), "--notebooks", "99_nothing.ipynb"]) == 2
    assert "not found" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_without_nbgrader_the_command_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "nbgrader", None)   # as if it were not installed
    assert main(["course", "build", str(tmp_path / "c")]) == 2
    assert "pip install 'ftkit[course]'" in capsys.readouterr().err and not (tmp_path / "c").exists()


@pytest.mark.parametrize("args", [["course"], ["course", "publish", "x"]])
def test_bad_course_commands_exit_with_usage(args):
    with pytest.raises(SystemExit):
        main(args)

