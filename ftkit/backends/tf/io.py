"""Saving and loading Keras 3 weights with safetensors (never pickle).

Each variable is stored under its Keras 3 ``.path`` (e.g. ``block_1_expand/kernel``); a path that
occurs twice in one model (possible with nested user models) gets ``#1``, ``#2``... in model order.
"""
import numpy as np
from safetensors.numpy import load_file, save_file

from .models import is_peft_variable


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


def _selected(model, parts=None):
    """``named_weights`` of ``model.native``; with ``parts`` (see ftkit.peft.saved_parts) only those: the
    head's, every variable that is not a parameter (BatchNorm statistics), the LoRA adapters, the biases."""
    weights = named_weights(model.native)
    if parts is None:
        return weights
    head = {id(v) for m in model.groups[-1].members for v in m.weights}
    params = {id(v) for layer in model.native._flatten_layers() for v in layer._trainable_variables}
    return {k: v for k, v in weights.items()
            if id(v) in head or ("buffers" in parts and id(v) not in params)
            or ("lora" in parts and is_peft_variable(v, "lora")) or ("bias" in parts and is_peft_variable(v, "bitfit"))}


def save_weights(model, path, parts=None):
    """All weights (BatchNorm statistics included) of ``model.native`` to ``path``, or only the ``parts``
    a peft run changed."""
    state = {k: np.ascontiguousarray(v.numpy()) for k, v in _selected(model, parts).items()}
    save_file(state, path, metadata={"format": "ftkit-keras3"})


def load_weights(model, path, parts=None):
    """Load weights saved by :func:`save_weights` with the same ``parts``; every key and shape must match."""
    state = load_file(path)
    weights = _selected(model, parts)
    missing, unexpected = sorted(set(weights) - set(state)), sorted(set(state) - set(weights))
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    for k, v in weights.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"{path}: {k} has shape {state[k].shape}, the model's is {tuple(v.shape)}")
    for k, v in weights.items():
        v.assign(state[k])
