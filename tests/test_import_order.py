"""ftkit imports no framework by itself, and the TensorFlow-before-triton crash cannot happen.

Each order runs in a fresh process; a segmentation fault shows as return code -11.
"""
import pytest

from conftest import run_python

STEP = ("import torch\n"
        "w = torch.nn.Parameter(torch.ones(3))\n"
        "opt = torch.optim.SGD([w], lr=0.1)\n"
        "w.sum().backward(); opt.step()\n"
        "assert float(w[0]) < 1.0\n")


def test_import_ftkit_imports_no_framework_or_ui():
    r = run_python("import sys, ftkit\n"
                   "bad = [m for m in ('torch', 'tensorflow', 'keras', 'ipywidgets', 'jupyterlab', 'matplotlib') "
                   "if m in sys.modules]\n"
                   "print(bad); assert not bad, bad\n")
    assert r.returncode == 0, r.stderr[-2000:]


def test_control_the_crash_is_real_without_ftkit():
    """Without ftkit's guard the pinned wheels crash: this is what the guard prevents."""
    r = run_python("import tensorflow\nimport triton\n", timeout=300)
    assert r.returncode == -11, (r.returncode, r.stderr[-1000:])


@pytest.mark.parametrize("order", [
    "import ftkit\nimport tensorflow\n" + STEP,
    "import tensorflow\nimport ftkit\n" + STEP,
    "import torch\nimport tensorflow\nimport ftkit\n" + STEP,
    "import ftkit\nimport torch\nimport tensorflow\n" + STEP,
    "import keras\nimport ftkit\n" + STEP,
], ids=["ftkit-tf-torch", "tf-ftkit-torch", "torch-tf-ftkit", "ftkit-torch-tf", "keras-ftkit-torch"])
def test_any_import_order_survives(order):
    r = run_python(order, env={"KERAS_BACKEND": "tensorflow"})
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])


def test_explicit_triton_after_tensorflow_is_refused_not_a_crash():
    r = run_python("import tensorflow\nimport warnings\nimport ftkit\n"
                   "try:\n    import triton\nexcept ImportError:\n    print('refused')\n")
    assert r.returncode == 0 and "refused" in r.stdout, (r.returncode, r.stderr[-1500:])


def test_both_frameworks_train_in_one_process_whatever_comes_first():
    code = ("import tensorflow as tf\nimport ftkit\n"
            "d = ftkit.load_dataset('digits', verbose=False).subset(4)\n"
            "for fw in ('tf', 'torch'):\n"
            "    m = ftkit.load_model('mobilenet_v2', framework=fw, num_classes=10, image_size=32, verbose=False)\n"
            "    r = ftkit.finetune(m, d, epochs=1, progress=False, strategy='head_only')\n"
            "    assert r.status == 'finished', r.status\n")
    r = run_python(code, timeout=600)
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])


# As on Binder's CPU-only stack (PyTorch's CPU wheels bring no triton): a finder in front of the others makes
# triton absent, exactly as an uninstalled package is (find_spec gives None, import raises ModuleNotFoundError).
NO_TRITON = ("import sys, importlib.machinery\n"
             "class NoTriton(importlib.machinery.PathFinder):\n"
             "    @classmethod\n"
             "    def find_spec(cls, name, path=None, target=None):\n"
             "        return None if name.split('.')[0] == 'triton' else super().find_spec(name, path, target)\n"
             "sys.meta_path = [NoTriton if f is importlib.machinery.PathFinder else f for f in sys.meta_path]\n"
             "import importlib.util\nassert importlib.util.find_spec('triton') is None\n")


@pytest.mark.parametrize("order", ["import ftkit\nimport tensorflow\n", "import tensorflow\nimport ftkit\n"],
                         ids=["ftkit-tf", "tf-ftkit"])
def test_without_triton_the_guard_stays_quiet_and_both_frameworks_work(order):
    code = (NO_TRITON + "import warnings\nwarnings.simplefilter('error', RuntimeWarning)\n" + order + STEP +
            "import ftkit._frameworks as f\n"
            "assert not f.TRITON_BLOCKED and 'triton' not in sys.modules, (f.TRITON_BLOCKED, sys.modules.get('triton'))\n"
            "d = ftkit.load_dataset('digits', verbose=False).subset(4)\n"
            "for fw in ('torch', 'tf'):\n"
            "    m = ftkit.load_model('mobilenet_v2', framework=fw, num_classes=10, image_size=32, verbose=False)\n"
            "    assert ftkit.finetune(m, d, epochs=1, progress=False, strategy='head_only').status == 'finished'\n"
            "print('ok')\n")
    r = run_python(code, env={"KERAS_BACKEND": "tensorflow"}, timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stderr[-2000:])
