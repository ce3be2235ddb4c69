"""Loading the two frameworks safely, and only when a model of theirs is used.

With the pinned wheels, importing TensorFlow before ``triton`` (which torch
loads, sometimes lazily at the first optimizer) kills the process with a
segmentation fault inside triton (TensorFlow issue 124205). :func:`guard` runs
when ftkit is imported and makes the crash impossible whatever order a user's
cells import in:

* TensorFlow not imported yet: import triton now (it does not import torch),
  so any later TensorFlow import is safe.
* TensorFlow already imported and triton not: block triton for this process.
  torch works without it (only ``torch.compile`` on a GPU needs it); a warning
  says to import ftkit first next time.
"""
import importlib
import importlib.util
import os
import sys
import warnings

TRITON_BLOCKED = False


def guard():
    """Make the TensorFlow-then-triton crash impossible in this process."""
    global TRITON_BLOCKED
    if "triton" in sys.modules or TRITON_BLOCKED:
        return
    if importlib.util.find_spec("triton") is None:
        return
    if "tensorflow" not in sys.modules:
        importlib.import_module("triton")
        return
    sys.modules["triton"] = None  # makes `import triton` raise ImportError; torch then runs without it
    TRITON_BLOCKED = True
    warnings.warn("TensorFlow was imported before ftkit, so triton is disabled in this process to avoid a "
                  "known crash (torch still works; torch.compile on a GPU does not). Import ftkit first "
                  "to keep triton.", RuntimeWarning, stacklevel=3)


def torch():
    """Import and return torch (and torchvision), after the guard."""
    guard()
    import torch as _torch
    return _torch


def tensorflow():
    """Import and return TensorFlow with Keras 3 on the TensorFlow backend, after the guard."""
    guard()
    backend = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        from .errors import ConfigError
        raise ConfigError(f"KERAS_BACKEND={backend!r}: ftkit's TensorFlow side needs KERAS_BACKEND='tensorflow' "
                          "(set it before keras is first imported, or restart the kernel)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as _tf
    return _tf


def backend(framework):
    """The backend package of ``framework`` ('torch' or 'tf'), imported on first use."""
    from .errors import choose
    framework = {"pytorch": "torch", "tensorflow": "tf", "keras": "tf"}.get(framework, framework)
    choose("framework", framework, ["torch", "tf"])
    if framework == "torch":
        torch()
    else:
        tensorflow()
    return importlib.import_module(f"ftkit.backends.{framework}")


def available():
    """Which frameworks are installed (without importing them)."""
    return {name: importlib.util.find_spec(mod) is not None for name, mod in (("torch", "torch"), ("tf", "tensorflow"))}
