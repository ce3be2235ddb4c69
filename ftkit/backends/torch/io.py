"""Saving and loading PyTorch weights with safetensors (never pickle)."""
from safetensors.torch import load_file, save_file

from .models import is_peft_param


def _state(model, parts=None):
    """``model.native``'s state dict; with ``parts`` (see ftkit.peft.saved_parts) only those entries:
    the head's, every buffer (BatchNorm statistics), the LoRA adapters, the biases."""
    state = model.native.state_dict(keep_vars=True)
    if parts is None:
        return state
    head = {id(t) for m in model.groups[-1].members for t in [*m.parameters(), *m.buffers()]}
    buffers = {id(b) for b in model.native.buffers()}
    return {k: t for k, t in state.items()
            if id(t) in head or ("buffers" in parts and id(t) in buffers)
            or ("lora" in parts and is_peft_param(k, "lora")) or ("bias" in parts and is_peft_param(k, "bitfit"))}


def _aliases(model):
    """Keys of the state dict whose tensor an earlier key already holds: tied weights (a seq2seq decoder's
    output layer *is* its token embedding). safetensors stores each tensor once, under its first key."""
    seen, out = set(), set()
    for k, t in model.native.state_dict(keep_vars=True).items():
        if id(t) in seen:
            out.add(k)
        seen.add(id(t))
    return out


def save_weights(model, path, parts=None):
    """All weights and buffers (BatchNorm statistics included) of ``model.native`` to ``path``, or only
    the ``parts`` a peft run changed; a tied weight once."""
    tied = _aliases(model)
    state = {k: v.detach().cpu().contiguous() for k, v in _state(model, parts).items() if k not in tied}
    save_file(state, path)


def load_weights(model, path, parts=None):
    """Load weights saved by :func:`save_weights` with the same ``parts``; every key must match."""
    state = load_file(path, device="cpu")
    tied = _aliases(model)
    if parts is None and not tied:
        model.native.load_state_dict(state)
        return
    expected = set(_state(model, parts)) - tied
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    model.native.load_state_dict(state, strict=False)
