"""Saving and loading PyTorch weights with safetensors (never pickle)."""
from safetensors.torch import load_file, save_file


def save_weights(model, path):
    """All weights and buffers (BatchNorm statistics included) of ``model.native`` to ``path``."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.native.state_dict().items()}
    save_file(state, path)


def load_weights(model, path):
    """Load weights saved by :func:`save_weights`; every key must match."""
    model.native.load_state_dict(load_file(path, device="cpu"))
