"""A newcomer's first run: no frightening CUDA noise on a CPU machine, and notebooks write only to runs/.

* TensorFlow probes for CUDA when it loads and prints "Could not find cuda drivers...", "failed call
  to cuInit" and friends. On a machine with no NVIDIA GPU ftkit keeps those lines off stderr
  (``ftkit._frameworks.tensorflow``); anything else still gets through.
* Running the quick start, and the control panel as a learner would in a new notebook next to it,
  leaves ``git status`` as it was: runs, exports and CSV files go to the ignored ``runs/``.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_python
from ftkit import _frameworks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NOISE = ("cuinit", "cuda drivers", "cudart_stub")


def _noise_in(text):
    return [line for line in text.splitlines() if any(word in line.lower() for word in NOISE)]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "FTKIT_TF_QUIET"}
    env.update(extra)
    return env


needs_no_gpu = pytest.mark.skipif(any(os.path.exists(p) for p in _frameworks.GPU_FILES),
                                  reason="this machine has an NVIDIA GPU: TensorFlow's CUDA messages are then real "
                                         "and are kept")


@needs_no_gpu
def test_tensorflow_import_and_a_tiny_finetune_print_no_cuda_noise():
    code = ("import ftkit, ftkit.backends.tf\n"
            "d = ftkit.load_dataset('digits', verbose=False).subset(2)\n"
            "m = ftkit.load_model('mobilenet_v2', framework='tf', num_classes=10, image_size=32, verbose=False)\n"
            "r = ftkit.finetune(m, d, epochs=1, strategy='head_only', progress=False)\n"
            "assert r.status == 'finished', r.status\n"
            "print('done')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env())
    assert r.returncode == 0 and "done" in r.stdout, r.stderr[-3000:]
    assert not _noise_in(r.stderr), "TensorFlow's CUDA probing reached stderr:\n" + "\n".join(_noise_in(r.stderr))


@needs_no_gpu
def test_control_without_the_filter_tensorflow_is_noisy():
    """FTKIT_TF_QUIET=0 turns the filter off: the noise is real on this machine, so the test above means something."""
    r = subprocess.run([sys.executable, "-c", "import ftkit, ftkit.backends.tf\n"
                        "import tensorflow as tf; tf.config.list_physical_devices()\n"],
                       capture_output=True, text=True, timeout=300, env=_env(FTKIT_TF_QUIET="0"))
    assert r.returncode == 0, r.stderr[-2000:]
    if not _noise_in(r.stderr):
        pytest.skip("this TensorFlow prints no CUDA messages here even unfiltered")


def test_the_filter_drops_only_noise_and_keeps_everything_else():
    lines = ["WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             "I0000 00:00:1795851682.977926   11796 port.cc:153] oneDNN custom operations are on.",
             "I0000 00:00:1795851682.979441   11796 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
             "GPU will not be used.",
             "I0000 00:00:1795851685.357339   11796 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
             "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.",
             "E0000 00:00:1795851760.735060   12408 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
             "E0000 00:00:1795851760.735060   12408 something.cc:52] a real error",
             "W0000 00:00:1795851760.735060   12408 other.cc:7] a warning below level 2",
             "/x/y.py:3: UserWarning: a Python warning",
             "something ftkit does not know"]
    code = ("import os\nfrom ftkit import _frameworks\n"
            "with _frameworks._quiet_stderr():\n"
            f"    os.write(2, {repr(chr(10).join(lines) + chr(10))}.encode())\n"
            "os.write(2, b'after\\n')\n")
    r = run_python(code, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["E0000 00:00:1795851760.735060   12408 something.cc:52] a real error",
                                     "/x/y.py:3: UserWarning: a Python warning",
                                     "something ftkit does not know", "after"]


def test_no_gpu_is_decided_from_the_driver_files(monkeypatch):
    monkeypatch.setattr(os.path, "exists", lambda p: p == "/dev/nvidiactl")
    assert _frameworks.no_gpu() is False
    monkeypatch.setattr(os.path, "exists", lambda p: p == "/proc/driver/nvidia/version")
    assert _frameworks.no_gpu() is False
    monkeypatch.setattr(os.path, "exists", lambda p: False)
    assert _frameworks.no_gpu() is True


def test_summary_says_what_it_shows():
    import ftkit
    model = ftkit.load_model("mobilenet_v2", num_classes=10, image_size=32, verbose=False)
    now = model.summary()
    assert "state now" in now and now.count("trainable") == len(model.groups)
    config = ftkit.FineTuneConfig(strategy="partial", trainable_groups=2)
    planned = model.summary(config)
    assert planned.count("trains in epoch 1") == 2 and planned.count("frozen") == len(model.groups) - 2
    assert planned.splitlines()[-2].endswith("trains in epoch 1")  # the head
    assert "trainable" not in planned.splitlines()[0]
    assert model.summary("progressive").count("trains in epoch 1") == 1
    assert model.trainable_mask() == [True] * len(model.groups)  # showing a plan changes nothing
    with pytest.raises(ftkit.ConfigError):
        model.summary("nope")


def test_doctor_prints_no_cuda_noise():
    r = subprocess.run([sys.executable, "-m", "ftkit.cli", "doctor"], capture_output=True, text=True, timeout=300,
                       env=_env())
    assert r.returncode == 0, r.stderr[-2000:]
    assert not _noise_in(r.stderr), r.stderr[-2000:]


# ---------------------------------------------------------------- notebooks write only to runs/

PANEL_CELLS = [
    "import ftkit\nfrom ftkit_widgets import FineTunePanel",
    "p = FineTunePanel(model=\"mobilenet_v2\", dataset=\"digits\", subset=5, image_size=32)\np",
    "p.train(wait=True)\nassert p.run is not None and p.error is None, p.error",
    "p.runboard.export()",
]


def _git_status():
    r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.splitlines())


def _execute(nb, cwd):
    from nbclient import NotebookClient
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(cwd)}}).execute()


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_a_learners_panel_notebook_leaves_git_status_unchanged(tmp_path, monkeypatch):
    """A learner's own notebook in notebooks/ that trains from the panel and exports the run board writes
    only into the ignored runs/ folder (tests/test_notebooks.py checks the same for every shipped notebook)."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    monkeypatch.setenv("FTKIT_PROFILE", "smoke")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = _git_status()
    # kept in a temp folder so it is not itself a new file; the kernel's working directory is notebooks/
    panel = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in PANEL_CELLS])
    nbformat.write(panel, tmp_path / "my_panel.ipynb")
    _execute(nbformat.read(tmp_path / "my_panel.ipynb", as_version=4), NOTEBOOKS)

    after = _git_status()
    new = sorted(after - before)
    assert not new, ("running the notebooks (cwd notebooks/) wrote into tracked or un-ignored files; outputs, "
                     "exports and run folders must go to an ignored runs/ folder:\n  " + "\n  ".join(new))
