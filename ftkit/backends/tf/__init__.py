"""The TensorFlow (Keras 3) backend: the mirror of ``ftkit.backends.torch``, module for module.

TensorFlow is imported through ``ftkit._frameworks.tensorflow()`` (triton first, KERAS_BACKEND=tensorflow).
"""
from ... import _frameworks

_frameworks.tensorflow()

from . import data, io, models, train  # noqa: E402,F401
