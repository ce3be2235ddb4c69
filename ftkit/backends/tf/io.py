"""Saving and loading Keras 3 weights with safetensors (never pickle).

Each variable is stored under its Keras 3 ``.path`` (e.g. ``block_1_expand/kernel``); a path that
occurs twice in one model (possible with nested user models) gets ``#1``, ``#2``... in model order.
"""
import numpy as np
from safetensors.numpy import load_file, save_file


def named_weights(native):
    """``{key: variable}`` for every weight of a keras.Model (BatchNorm moving statistics included)."""
    out = {}
    for v in native.weights:
        key, n = v.path, 0
        while key in out:
            n += 1
            key = f"{v.path}#{n}"
        out[key] = v
    return out


def save_weights(model, path):
    """All weights (BatchNorm statistics included) of ``model.native`` to ``path``."""
    state = {k: np.ascontiguousarray(v.numpy()) for k, v in named_weights(model.native).items()}
    save_file(state, path, metadata={"format": "ftkit-keras3"})


def load_weights(model, path):
    """Load weights saved by :func:`save_weights`; every key and shape must match."""
    state = load_file(path)
    weights = named_weights(model.native)
    missing, unexpected = sorted(set(weights) - set(state)), sorted(set(state) - set(weights))
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    for k, v in weights.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"{path}: {k} has shape {state[k].shape}, the model's is {tuple(v.shape)}")
    for k, v in weights.items():
        v.assign(state[k])
