"""How the notebooks meet a learner's machine: a small one (Binder), Colab, and the memory limit.

* ftkit.machine reads the memory limit a hosted kernel runs under (Binder's MEM_LIMIT, a container's cgroup);
* ``ftkit.notebook.setup`` picks a cpu profile's ``small`` sizes on a small machine, and says so;
* on Colab without a GPU it says what that means and what to do;
* a run that nears the memory limit stops with a message that says what to do, instead of a killed kernel;
* the Colab cell holds pip to the torch, torchvision and TensorFlow already installed.
"""
import os
import subprocess
import sys
import types
from importlib import metadata

import pytest

import ftkit
from ftkit import machine

SIZES = {"smoke": {"n": 1}, "cpu": {"n": 100, "batch_size": 32, "small": {"n": 40}}, "full": {"n": 1000}}


def test_the_memory_limit_is_the_smallest_of_mem_limit_and_the_cgroup(tmp_path):
    v2, v1 = tmp_path / "memory.max", tmp_path / "limit_in_bytes"
    v2.write_text("max\n")
    v1.write_text("9223372036854771712\n")   # cgroup v1's "no limit"
    files = (str(v2), str(v1))
    assert machine.memory_limit({}, files) is None
    assert machine.memory_limit({"MEM_LIMIT": "2147483648"}, files) == 2 * 2**30
    v2.write_text("1073741824\n")
    assert machine.memory_limit({"MEM_LIMIT": "2147483648"}, files) == 2**30
    assert machine.memory_limit({"MEM_LIMIT": "not a number"}, (str(tmp_path / "absent"),)) is None
    assert machine.small_machine(2 * 2**30) and not machine.small_machine(16 * 2**30)


@pytest.fixture
def no_cgroup(monkeypatch):
    """This machine's own cgroup limit (if any) out of the way: the limit is MEM_LIMIT alone."""
    monkeypatch.setattr(machine, "CGROUP_FILES", ())
    monkeypatch.delenv("MEM_LIMIT", raising=False)


def test_setup_uses_the_small_sizes_on_a_small_machine_only(monkeypatch, capsys, no_cgroup):
    saved = []   # save_memory changes this whole process's allocators: it is tested in a process of its own
    monkeypatch.setattr(machine, "save_memory", lambda: saved.append(1) or ["fewer copies"])
    monkeypatch.setenv("FTKIT_PROFILE", "cpu")
    big = ftkit.notebook.setup("torch", SIZES)
    assert big.sizes == {"n": 100, "batch_size": 32} and not big.small and big.memory_limit is None
    assert not saved and not big.saving
    monkeypatch.setenv("MEM_LIMIT", str(2 * 2**30))   # mybinder.org
    small = ftkit.notebook.setup("torch", SIZES)
    assert small.sizes == {"n": 40, "batch_size": 32} and small.small
    assert saved and small.saving == ["fewer copies"]
    out = capsys.readouterr().out
    assert "allows 2.0 GB; the cpu profile's smaller sizes for a small machine are used" in out
    assert "small machine: memory before speed (fewer copies)" in out
    monkeypatch.setenv("FTKIT_PROFILE", "smoke")   # the smoke profile is small already
    assert ftkit.notebook.setup("torch", SIZES).sizes == {"n": 1}
    monkeypatch.setenv("FTKIT_PROFILE", "cpu")
    plain = {**SIZES, "cpu": {"n": 100}}   # no small sizes: the cpu ones, and the limit is still shown
    assert ftkit.notebook.setup("torch", plain).sizes == {"n": 100}
    assert "allows 2.0 GB" in capsys.readouterr().out


def test_setup_says_when_a_notebook_does_not_fit_a_small_machine_in_this_framework(monkeypatch, capsys, no_cgroup):
    monkeypatch.setattr(machine, "save_memory", lambda: [])
    monkeypatch.setenv("FTKIT_PROFILE", "cpu")
    sizes = {**SIZES, "cpu": {"n": 100, "small": {"n": 40, "does_not_fit": ["torch"]}}}
    assert ftkit.notebook.setup("torch", sizes).fits   # a machine with no limit
    assert "needs more memory" not in capsys.readouterr().out
    monkeypatch.setenv("MEM_LIMIT", str(2 * 2**30))
    small = ftkit.notebook.setup("torch", sizes)
    assert not small.fits and small.sizes == {"n": 40}
    out = capsys.readouterr().out
    assert "needs more memory than this machine allows in PyTorch" in out and "FRAMEWORK = 'tf'" in out
    sizes["cpu"]["small"]["does_not_fit"] = ["torch", "tf"]   # neither: the other framework is no way out
    assert not ftkit.notebook.setup("torch", sizes).fits
    out = capsys.readouterr().out
    assert "allows in PyTorch" in out and "Use a laptop or Colab." in out and "FRAMEWORK =" not in out
    sizes["cpu"]["small"]["does_not_fit"] = ["tf"]
    assert ftkit.notebook.setup("torch", sizes).fits and "needs more memory" not in capsys.readouterr().out


def test_colab_without_a_gpu_says_what_to_do(monkeypatch, capsys):
    monkeypatch.setenv("FTKIT_PROFILE", "cpu")
    ftkit.notebook.setup("torch", SIZES)
    assert "Colab" not in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    ftkit.notebook.setup("torch", SIZES)
    out = capsys.readouterr().out
    assert "This Colab runtime has no GPU" in out and "Runtime > Change runtime type" in out


def test_a_run_near_the_memory_limit_stops_with_a_message(monkeypatch, capsys, no_cgroup):
    data = ftkit.load_dataset("digits", verbose=False).subset(20)
    config = dict(epochs=2, batch_size=8, strategy="head_only", progress=False)
    model = ftkit.load_model("mobilenet_v2", framework="torch", num_classes=10, image_size=32, verbose=False)
    assert ftkit.finetune(model, data, **config).status == "finished"   # no limit: nothing to watch
    monkeypatch.setenv("MEM_LIMIT", str(machine.memory_used()))     # already at the limit
    run = ftkit.finetune(model, data, **config)
    assert run.status == "stopped" and "out of memory soon" in run.message and "restart the kernel" in run.message
    assert len(run.history["steps"]) == 5 and not run.history["epochs"]   # the watch looks every 5 steps
    assert "ftkit: stopping: this process uses" in capsys.readouterr().out


def test_the_colab_cell_holds_pip_to_the_installed_frameworks(monkeypatch, tmp_path):
    from IPython.core.inputtransformer2 import TransformerManager
    code = TransformerManager().transform_cell(ftkit.notebook.colab_cell())
    calls = []
    shell = types.SimpleNamespace(run_line_magic=lambda name, line: calls.append((name, line)))
    colab = types.ModuleType("google.colab")
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(("widgets", "")))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.output", colab.output)
    exec(code, {"get_ipython": lambda: shell})
    (magic1, install), (magic2, data), widgets = calls
    assert magic1 == magic2 == "pip" and widgets == ("widgets", "")
    assert install.startswith("install -q -c /tmp/colab-keep.txt ") and "ftkit[torch,tf,widgets,data]" in install
    assert "--no-deps" in data
    with open("/tmp/colab-keep.txt") as f:
        kept = sorted(f.read().split())
    assert kept == sorted(f"{n}=={metadata.version(n)}" for n in ("torch", "torchvision", "tensorflow"))


def test_make_names_missing_debian_packages_in_one_line(tmp_path):
    """scripts/system-packages.sh (run by `make lab` / `make test`) as a user who may not install packages: one
    line on stderr names what is missing and the command that installs it, and make stops there."""
    import subprocess
    from pathlib import Path
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, body in {"dpkg-query": "exit 1", "id": "echo 1000", "sudo": "exit 1"}.items():
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    script = Path(__file__).resolve().parents[1] / "scripts" / "system-packages.sh"
    r = subprocess.run(["bash", str(script), "test"], capture_output=True, text=True, timeout=60,
                       env={"PATH": f"{fake}:/usr/bin:/bin", "PYTHON": sys.executable})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stdout, r.stderr)
    assert lines[0] == ("ftkit: missing Debian packages: dataset-fashion-mnist chromium; install them with: "
                        "sudo apt-get install -y dataset-fashion-mnist chromium (then run make again)")


def test_the_readme_opens_with_the_three_ways_in_and_the_same_badges_as_the_notebooks():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    first_screen = readme[:readme.index("## What is here")]
    for badge in (ftkit.notebook.binder_badge("00_quickstart.ipynb"), ftkit.notebook.colab_badge("00_quickstart.ipynb"),
                  "make lab", "ftkit course build"):
        assert badge in first_screen, badge


def test_the_widgets_refuse_ipywidgets_7_with_what_to_do():
    """Colab ships ipywidgets 7; a kernel that imported it before ftkit's install keeps it until restarted."""
    import subprocess
    code = ("import sys, types\n"
            "sys.modules['ipywidgets'] = types.SimpleNamespace(__version__='7.7.1')\n"
            "try:\n    import ftkit_widgets\nexcept ImportError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "needs ipywidgets 8 or newer, and this kernel has ipywidgets 7.7.1" in r.stdout, r.stdout + r.stderr
    assert "Runtime > Restart session" in r.stdout


FRAGMENTED = """
import sys
import numpy as np
from ftkit import machine

if sys.argv[1] == "save":
    print(machine.save_memory())
np.ones(1 << 19)   # a 4 MB array freed: glibc's threshold for arrays of their own pages rises past 4 MB
before = machine.memory_used()
big, small = [], []
for _ in range(300):   # 300 MB of 1 MB arrays, a small array that stays between each two
    big.append(np.ones(1 << 17))
    small.append(np.ones(1000))
del big
if sys.argv[1] == "release":
    machine.release_memory()
print("KEPT", (machine.memory_used() - before) / 1e6)
"""


@pytest.mark.skipif(machine._glibc() is None, reason="glibc's malloc only")
def test_freed_arrays_go_back_to_the_system_on_a_small_machine_and_after_each_epoch(tmp_path):
    """A process that freed 300 MB of arrays still holds them (glibc keeps freed memory in its heap); after
    save_memory, which a small machine's setup calls, they are handed back at once, and release_memory, which
    the training loop calls after each epoch, hands them back too."""
    import subprocess
    script = tmp_path / "fragmented.py"
    script.write_text(FRAGMENTED)
    kept = {}
    for mode in ("plain", "save", "release"):
        r = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        kept[mode] = float(r.stdout.split("KEPT")[-1])
    assert kept["plain"] > 250, kept   # what the two calls must hand back
    assert kept["save"] < 50 and kept["release"] < 50, kept


def test_save_memory_puts_snapshots_in_a_file_and_tensorflow_on_malloc_only_before_it_is_imported():
    code = ("import os, sys\nfrom ftkit import machine\nprint(machine.SNAPSHOTS_IN_A_FILE)\n"
            "print(machine.save_memory(), machine.SNAPSHOTS_IN_A_FILE,"
            "      os.environ.get('TF_ONEDNN_USE_SYSTEM_ALLOCATOR'))\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "TensorFlow allocates with malloc" in r.stdout and r.stdout.strip().endswith("1")
    assert r.stdout.startswith("False\n") and r.stdout.strip().endswith("] True 1"), r.stdout
    late = code.replace("from ftkit import machine", "import tensorflow\nfrom ftkit import machine")
    r = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "TensorFlow" not in r.stdout and r.stdout.strip().endswith("None"), r.stderr[-2000:]
