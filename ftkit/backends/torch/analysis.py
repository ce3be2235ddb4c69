"""PyTorch side of ``ftkit.analysis``: a group's weights and a group's outputs."""
import numpy as np
import torch

from ...data import Split
from ...errors import ConfigError
from . import data as tdata
from .models import modes, set_modes


def group_weights(members, statistics=False):
    """Copies of the parameters of ``members`` (each once, in module order) as NumPy arrays;
    with ``statistics``, their buffers too (BatchNorm's running mean and variance, batch count)."""
    seen, out = set(), []
    for m in members:
        tensors = list(m.parameters()) + (list(m.buffers()) if statistics else [])
        for p in tensors:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p.detach().float().cpu().numpy().copy())
    return out


def _pooled(t):
    """(N, C, H, W) conv maps -> (N, C) by averaging over space; other outputs flattened to (N, D)."""
    t = t.detach().float()
    if t.ndim == 4:
        t = t.mean((2, 3))
    return t.reshape(len(t), -1).cpu()


@torch.no_grad()
def group_features(model, images, batch_size):
    """Each group's output on ``images`` (raw, 0..255): the last member's output, read by a forward
    hook; the last group's is the model's output (the logits). Eval mode, restored afterwards."""
    net = model.native
    device = next(net.parameters()).device
    x, _ = tdata.to_tensors(model, Split(images, np.zeros(len(images), np.int64)), device)
    outs = [[] for _ in model.groups]

    def keep(i):
        return lambda module, inputs, output: outs[i].append(_pooled(output))

    hooks = [g.members[-1].register_forward_hook(keep(i)) for i, g in enumerate(model.groups[:-1])]
    state = modes(net)
    net.eval()
    try:
        for idx in torch.arange(len(images)).split(batch_size):
            outs[-1].append(_pooled(net(tdata.prepare(model, tdata.batch(x, idx, device)))))
    finally:
        for h in hooks:
            h.remove()
        set_modes(net, state)
    n_batches = len(outs[-1])
    for g, o in zip(model.groups, outs):
        if len(o) != n_batches:
            raise ConfigError(f"group {g.name!r}: its last member ran {len(o)} times for {n_batches} batches; "
                              "group_features needs it to run once per forward pass")
    return [torch.cat(o).numpy() for o in outs]
