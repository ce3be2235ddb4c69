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

:func:`tensorflow` also keeps TensorFlow's CUDA probing quiet on a machine with no
NVIDIA GPU (see :func:`no_gpu` and :func:`_quiet_stderr`).
"""
import contextlib
import importlib
import importlib.util
import os
import re
import sys
import tempfile
import threading
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
    with _TF_LOCK:  # one thread at a time redirects stderr
        forced = os.environ.get("FTKIT_TF_QUIET")  # "0": never filter, "1": always
        quiet = forced == "1" if forced in ("0", "1") else (no_gpu() and os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0")
        quiet = quiet and "tensorflow" not in sys.modules
        with _quiet_stderr() if quiet else contextlib.nullcontext():
            import tensorflow as _tf
            if quiet:
                _tf.config.list_physical_devices()  # the cuInit probe happens here, so inside the filter
    return _tf


_TF_LOCK = threading.RLock()


def no_gpu():
    """True when this machine surely has no NVIDIA GPU, decided without loading CUDA.

    The NVIDIA kernel driver creates ``/dev/nvidiactl`` and ``/proc/driver/nvidia/version``; WSL2
    exposes GPUs through ``/dev/dxg`` instead. None of them: TensorFlow's CUDA probing can only
    fail, and :func:`tensorflow` keeps its messages about that off stderr (``FTKIT_TF_QUIET=0``
    shows them, as does ``TF_CPP_MIN_LOG_LEVEL=0``). With a GPU nothing is filtered.
    """
    return not any(os.path.exists(p) for p in GPU_FILES)


GPU_FILES = ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/dxg")


# What TensorFlow writes while it looks for CUDA on a machine without a GPU. Lines logged before
# absl::InitializeLog() ignore TF_CPP_MIN_LOG_LEVEL, so the filter applies that level itself.
_ABSL_HEADER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\]\s]+:\d+\] ")
_CUDA_NOISE = re.compile(r"cuInit|cuda drivers|cudart_stub|cuda_diagnostics|kernel driver does not appear|"
                         r"CUDA diagnostic information|Unable to register cu(DNN|FFT|BLAS) factory|"
                         r"TF-TRT Warning: Could not find TensorRT|Could not load dynamic library 'lib(cuda|cudart)")


def _noise(line, min_level):
    if line.strip() == _ABSL_HEADER:
        return True
    m = _LOG_LINE.match(line)
    if m and "IWEF".index(m.group(1)) < min_level:
        return True  # below TF_CPP_MIN_LOG_LEVEL, printed only because logging was not set up yet
    return bool(_CUDA_NOISE.search(line))


@contextlib.contextmanager
def _quiet_stderr():
    """Route file descriptor 2 to a temporary file while TensorFlow loads, then write back every line
    except CUDA-probing noise and log lines below ``TF_CPP_MIN_LOG_LEVEL``. Anything else (an error,
    a Python warning, a message ftkit does not know) still reaches stderr, after the import."""
    try:
        min_level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            kept, dropped_prev = [], False
            for line in text.splitlines(keepends=True):
                # the second line of TensorFlow's AVX notice belongs to the dropped first line
                if dropped_prev and line.startswith("To enable the following instructions"):
                    continue
                dropped_prev = _noise(line, min_level)
                if not dropped_prev:
                    kept.append(line)
            data = "".join(kept).encode()
            while data:
                data = data[os.write(2, data):]


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
