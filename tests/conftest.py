import os
import subprocess
import sys

import pytest

# Nothing in the tests may reach a hub: the machines have no network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
