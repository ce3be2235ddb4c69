"""Parameter-efficient fine-tuning (PEFT): LoRA adapters and BitFit, the same in both frameworks.

``FineTuneConfig(peft=...)`` changes *what trains inside the groups that the strategy trains*:

* ``peft="lora"`` (Hu et al. 2021): the targeted layers get a low-rank adapter, so a layer computes
  ``W x + (lora_alpha / lora_rank) * B A x`` with A of rank ``lora_rank`` and B starting at zero (the model
  starts unchanged). Only the adapters train; every base weight stays bitwise as it was. PyTorch: the
  ``peft`` library injects the adapters into the module in place; TensorFlow: Keras 3's
  ``layer.enable_lora``.
* ``peft="bitfit"`` (Ben Zaken et al. 2022): only the bias terms train (Keras calls a normalisation
  layer's bias ``beta``; PyTorch calls it ``bias``).

The new head (the last group) always trains fully: it is new, not pre-trained. A group the strategy
freezes keeps its adapters and biases fixed too, so ``strategy="partial", trainable_groups=2,
peft="lora"`` trains the adapters of the last body group and the head.

``lora_targets`` names the layers to adapt; each entry is

* a layer group's name: every layer LoRA can adapt in that group;
* or a layer: in PyTorch a module name (``"query"``) or the end of its dotted path
  (``"attention.self.query"``); in Keras a layer name or the end of its path of nested layer names
  from the group's layer, joined by ``/`` (``"self_attention_layer/query"``). A named layer that LoRA
  cannot adapt but that contains layers it can (a transformer block) stands for those.

LoRA adapts linear (``Linear``; ``Dense``, ``EinsumDense``), convolution (not grouped or depthwise) and
embedding layers of the body; the head is never adapted. ``lora_targets=None`` takes the model's
default: the attention query and value projections of the BERT models, every 1x1 (pointwise)
convolution of the image models; a model from ``wrap_model`` has none, so it needs ``lora_targets``.

The two libraries shape an adapter alike for linear and convolution layers, but not for Keras'
EinsumDense, which keras-hub's attention uses: ``enable_lora`` factors its kernel (384, 12 heads, 32)
as A (384, 12, r) @ B (r, 32). So on MiniLM (rank 8, query and value of 6 layers) PyTorch trains
73,728 adapter weights (0.3% of the model) and TensorFlow 445,440 (2%).

Adapters are added by the first run with ``peft="lora"`` (drawn from its ``seed``) and stay in the
model: a later run on that model must use ``peft="lora"`` with the same ``lora_rank``, ``lora_alpha``
and ``lora_targets`` (it trains the same adapters further, never a second set); anything else is
refused (load the model again for a run without adapters). BitFit adds nothing, so any run may follow it.
"""
from .errors import ConfigError
from .strategies import plan

# model name -> default lora_targets; the image models' default is every 1x1 convolution of the body
DEFAULT_TARGETS = {"minilm": ["query", "value"], "bert-base-uncased": ["query", "value"]}
POINTWISE_DEFAULT = ("mobilenet_v2", "efficientnet_lite0", "resnet50", "efficientnet_b0")


def check(model, config):
    """Refuse a peft setting that cannot work on ``model`` (before any training)."""
    if model.lora is not None and (config.peft != "lora" or _settings(config) != _settings(model.lora)):
        have = model.lora
        raise ConfigError(
            f"peft={config.peft!r}: model {model.name!r} has LoRA adapters from an earlier run (lora_rank="
            f"{have['rank']}, lora_alpha={have['alpha']}, lora_targets={have['targets']!r}); a run on it must use "
            "peft='lora' with those settings, which trains the same adapters further. For another setting, "
            "or a run without adapters, load the model again")
    if config.peft is None:
        return
    masks = plan(config, len(model.groups), model.new_groups)
    if not any(any(mask[:-1]) for mask in masks):
        raise ConfigError(
            f"peft={config.peft!r} changes what trains inside the body's trained groups, but strategy="
            f"{config.strategy!r} trains no body group in any epoch (only the head), so it would change "
            "nothing; use strategy='full', 'partial' (trainable_groups >= 2), 'progressive' or 'lp_ft'")
    if config.peft == "lora" and model.lora is None:
        lora_layers(model, config.lora_targets)   # refuses targets that match nothing or cannot be adapted


def _settings(c):
    """(rank, alpha, targets) of a config or of a model's recorded adapters."""
    if isinstance(c, dict):
        return c["rank"], float(c["alpha"]), c["targets"]
    return c.lora_rank, float(c.lora_alpha), None if c.lora_targets is None else list(c.lora_targets)


def lora_layers(model, targets):
    """The body layers LoRA adapts for ``targets`` (None: the model's default), as
    ``[(group index, path, layer)]`` in model order; refuses a target that matches nothing or that
    names a layer LoRA cannot adapt."""
    mods = model.backend.models
    layers = mods.body_layers(model)
    sep = mods.PATH_SEP
    if targets is None:
        if model.name in POINTWISE_DEFAULT:
            return [entry for entry in layers if mods.is_pointwise(entry[2])]
        if model.name not in DEFAULT_TARGETS:
            raise ConfigError(f"lora_targets=None: model {model.name!r} has no default LoRA targets; name the "
                              f"layers to adapt, e.g. lora_targets={_candidates(model, layers)[:2]!r} "
                              f"(layers it can adapt: {', '.join(_candidates(model, layers))})")
        targets = DEFAULT_TARGETS[model.name]
    chosen = {}
    for t in targets:
        if t == model.groups[-1].name:
            raise ConfigError(f"lora_targets: {t!r} is the new head, which trains fully without adapters; "
                              f"name layers or body groups ({', '.join(model.group_names[:-1])})")
        if t in model.group_names:
            found = [e for e in layers if e[0] == model.group_names.index(t) and mods.cannot_adapt(e[2]) is None]
            if not found:
                raise ConfigError(f"lora_targets: group {t!r} has no layer LoRA can adapt (linear, convolution "
                                  "or embedding layers)")
        else:
            named = [e for e in layers if e[1] == t or e[1].endswith(sep + t)]
            if not named:
                raise ConfigError(
                    f"lora_targets: {t!r} matches no layer of the body of model {model.name!r}; layers it can "
                    f"adapt include {', '.join(_candidates(model, layers))} (or a body group: "
                    f"{', '.join(model.group_names[:-1])})")
            found = []
            for gi, path, layer in named:
                inside = [e for e in layers if e[1] == path or e[1].startswith(path + sep)]
                adaptable = [e for e in inside if mods.cannot_adapt(e[2]) is None]
                if not adaptable:
                    raise ConfigError(
                        f"lora_targets: {t!r} names {path!r}, {mods.cannot_adapt(layer)}, which LoRA cannot adapt "
                        f"in {model.framework}: it adapts linear, convolution (not grouped or depthwise) and "
                        "embedding layers")
                found += adaptable
        for e in found:
            chosen.setdefault(e[1], e)
    order = {path: i for i, (_, path, _) in enumerate(layers)}
    return sorted(chosen.values(), key=lambda e: order[e[1]])


def _candidates(model, layers, n=8):
    """A few distinct names of layers LoRA can adapt (for messages)."""
    sep, names = model.backend.models.PATH_SEP, []
    for _, path, layer in layers:
        name = path.rsplit(sep, 1)[-1]
        if model.backend.models.cannot_adapt(layer) is None and name not in names:
            names.append(name)
    return names[:n]


def prepare(model, config):
    """Before a run (or ``lr_find``) builds its optimizers: add LoRA adapters on the model's first LoRA run,
    drawn from ``config.seed``; a later LoRA run trains the same adapters."""
    if config.peft == "lora" and model.lora is None:
        add_lora(model, config.lora_rank, config.lora_alpha, config.lora_targets, config.seed)


def note_trained(model, config):
    """Record on the model what a run with ``config`` trains (see :func:`saved_parts`)."""
    masks = plan(config, len(model.groups), model.new_groups)
    if any(mask[-1] for mask in masks):
        model.trained.add("head")
    if any(any(mask[:-1]) for mask in masks):
        model.trained.add({None: "body", "lora": "lora", "bitfit": "bias"}[config.peft])


def add_lora(model, rank, alpha, targets, seed):
    """Add adapters of rank ``rank`` to the ``targets`` of ``model`` (see :func:`lora_layers`)."""
    layers = lora_layers(model, targets)
    model.backend.models.add_lora(model, layers, rank, float(alpha), seed)
    model.lora = {"rank": rank, "alpha": float(alpha), "targets": None if targets is None else list(targets),
                  "paths": [path for _, path, _ in layers]}


def trainable_count(model, config, mask=None):
    """Parameters that train with ``mask`` (one flag per group; None: the first epoch of ``config``'s
    strategy) under ``config.peft``. Adapters are counted before they exist."""
    if mask is None:
        from .strategies import plan
        mask = plan(config, len(model.groups), model.new_groups)[0]
    mods, counts = model.backend.models, model.param_counts()
    total = counts[-1] if mask[-1] else 0
    if config.peft is None:
        return total + sum(n for n, m in zip(counts[:-1], mask[:-1]) if m)
    planned = None
    if config.peft == "lora" and model.lora is None:
        planned = lora_layers(model, config.lora_targets)
    for gi, (g, m) in enumerate(zip(model.groups[:-1], mask[:-1])):
        if not m:
            continue
        if planned is not None:
            total += sum(mods.lora_size(layer, config.lora_rank) for i, _, layer in planned if i == gi)
        else:
            total += mods.count_params(g.members, only=config.peft)
    return total


def saved_parts(run):
    """What a saved run stores: None for every weight, or the parts that a peft run changed on a
    pre-trained model ("head", "buffers" such as BatchNorm statistics, "lora" adapters, "bias" for BitFit),
    which ``load_run`` puts back onto the pre-trained model. Runs without peft, and models whose body
    any run trained fully (or that were not pre-trained), store every weight."""
    from .models import MODELS
    model = run.model
    if run.config.peft is None or "body" in model.trained or not model.pretrained or model.name not in MODELS:
        return None
    parts = {"head", "buffers"}
    if model.lora is not None:
        parts.add("lora")
    if "bias" in model.trained:
        parts.add("bias")
    return parts
