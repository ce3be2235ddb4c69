"""The PyTorch backend (mirrors ftkit/backends/tf module for module)."""
from . import data, io, models, train  # noqa: F401
