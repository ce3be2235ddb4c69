import os
import subprocess
import sys

import pytest

# Nothing in the tests may reach a hub: the machines have no network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under pytest-xdist (`make test` runs 2 workers on the 2-core CI machine) each worker, and every
# notebook kernel it starts, computes on one thread: two 2-thread processes on 2 cores made PyTorch
# several times slower (oversubscription), not twice as fast.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(var, "1")


def run_python(code, timeout=300, env=None):
    """Run ``code`` in a fresh interpreter; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=full_env)


@pytest.fixture(scope="session")
def digits():
    import ftkit
    return ftkit.load_dataset("digits", verbose=False)


@pytest.fixture(scope="session")
def digits_small(digits):
    """8 images per class in every split: a run takes about a second."""
    return digits.subset(8)
