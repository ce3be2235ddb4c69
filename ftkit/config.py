"""FineTuneConfig: every setting of a fine-tuning run, in one plain dataclass.

The same config drives both frameworks, is saved with each run as JSON, and is
what the widgets edit. :meth:`FineTuneConfig.validate` refuses a bad value
before training starts, naming the field and what is allowed.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Union

from . import augment as _augment
from .errors import ConfigError, choose, whole_number
from .schedules import SCHEDULES
from .strategies import STRATEGIES, check_plan

OPTIMIZERS = ("adamw", "adam", "sgd")
PEFTS = (None, "lora", "bitfit")
SAMPLERS = ("shuffle", "balanced", "curriculum")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
MONITORS = ("val_loss", "val_accuracy", "val_exact_match", "val_f1", "val_map50", "val_map", "val_mean_iou")   # val_loss, or a task's (ftkit.tasks)


@dataclass
class FineTuneConfig:
    """Every setting of a run. Each field takes effect in both frameworks, except where noted here:

    * ``momentum`` acts only with ``optimizer="sgd"``; ``step_size`` only with ``schedule="step"``;
      ``gamma`` with "step" and "exponential"; ``min_lr_factor`` with "cosine"; ``cycle_steps`` with
      "cyclic"; ``div_factor`` with "cyclic" and "onecycle"; ``final_div_factor`` and ``pct_start``
      with "onecycle"; ``trainable_groups`` with "partial"; ``unfreeze_every`` with "progressive";
      ``probe_epochs`` with "lp_ft"; ``plan`` with "plan" (and is refused with any other strategy);
      ``monitor`` with ``early_stopping`` (and which epoch counts as best when a run diverges).
    * ``channels_last`` is a PyTorch memory layout; TensorFlow is always channels-last (NHWC).
    * ``precision`` other than fp32 needs a GPU; on a CPU the run falls back to fp32 and says so
      (``Run.notes``, ``Run.precision``).
    * ``progress`` shows a bar and changes nothing else.
    * ``peft`` ("lora" or "bitfit", see :mod:`ftkit.peft`) changes what trains inside the groups the
      strategy trains; ``lora_rank``, ``lora_alpha`` and ``lora_targets`` act only with ``peft="lora"``
      (``lora_targets`` is refused without it). ``l2sp`` then pulls what trains (adapters, biases) toward
      its values at the start of the run; weight decay applies to the adapters, never to biases.
    * ``sampler`` (see :mod:`ftkit.sampling`) keeps the steps per epoch; ``curriculum_start`` acts only with
      ``sampler="curriculum"``, which needs difficulty scores (``data.with_difficulty(ftkit.difficulty(...))``).
      ``sampler="balanced"`` with ``class_weights="balanced"`` is refused (it would count the imbalance
      twice); with a list of class weights, the weights act on top of the equal class frequencies.
    * ``dropout=None`` keeps the head's dropout rate from ``load_model(dropout=...)``; a number sets it.
    * ``loss_spike`` (off by default) stops a run when one step's loss exceeds that many times the
      run's first loss (during its first 10 steps) or the running mean of the previous steps (later):
      it catches a blow-up before the weights explode.
    * ``grad_checkpointing`` recomputes the activations of the body groups that train in the backward
      pass (same gradients, less memory, more time; see :mod:`ftkit.checkpointing`). It is refused when
      no body group trains in any epoch, and in TensorFlow for the keras-hub text models.
    """
    # what trains
    strategy: str = "full"
    trainable_groups: int = 2          # partial: how many of the last groups train
    unfreeze_every: int = 1            # progressive: epochs between unfreezing the next group
    probe_epochs: int = 1              # lp_ft: epochs that train the head alone before every group trains
    plan: Optional[list] = None        # strategy="plan": per epoch, how many last groups train, or a mask
    peft: Optional[str] = None         # None; "lora" (low-rank adapters) or "bitfit" (biases) in the trained groups
    lora_rank: int = 8                 # peft="lora": rank r of each adapter B @ A
    lora_alpha: float = 16.0           # peft="lora": the adapter's output is scaled by lora_alpha / lora_rank
    lora_targets: Optional[list] = None    # peft="lora": names of the layers to adapt; None: the model's default
    # optimisation
    epochs: int = 3
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    group_lrs: Optional[list] = None   # one LR per group, input to output
    lr_ratio: Optional[float] = None   # head LR / stem LR, spread geometrically
    momentum: float = 0.9              # sgd only
    # schedule (see ftkit.schedules)
    schedule: str = "constant"
    warmup_steps: int = 0
    step_size: Optional[int] = None
    gamma: float = 0.1
    min_lr_factor: float = 0.0
    cycle_steps: Optional[int] = None
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    pct_start: float = 0.3
    # regularization
    weight_decay: float = 0.01         # decoupled (AdamW-style); biases and norms excluded
    dropout: Optional[float] = None    # dropout before the head; None keeps the model's (load_model's dropout=)
    l2sp: float = 0.0                  # pull toward the weights the run starts from (pre-trained on a first run)
    label_smoothing: float = 0.0
    early_stopping: Optional[int] = None   # patience in epochs; best weights are restored
    monitor: str = "val_loss"
    augment: Union[bool, str] = False  # False; True (= "flip_shift") or a policy of ftkit.augment.POLICIES
    class_weights: Union[None, str, list] = None   # None, "balanced" or one weight per class
    # data order
    sampler: str = "shuffle"           # "shuffle", "balanced" (classes equally often) or "curriculum" (easy first)
    curriculum_start: float = 0.3      # sampler="curriculum": fraction of the easiest examples in the first epoch
    # mechanics
    grad_accum: int = 1
    clip_norm: Optional[float] = None
    grad_checkpointing: bool = False   # recompute activations in the backward pass: less memory, more time
    precision: str = "auto"            # auto: bf16 on a GPU that has it, else fp32
    device: str = "auto"
    channels_last: Optional[bool] = None   # None: on for convnets
    seed: int = 0
    max_steps_per_epoch: Optional[int] = None
    loss_spike: Optional[float] = None     # stop when a step's loss exceeds this many times its running mean
    progress: bool = True                  # a progress bar; changes nothing else

    def validate(self, n_groups=None, num_classes=None, monitors=None):
        """Raise ConfigError for the first invalid field; return self. ``monitors``: the validation metrics
        the model's task has besides val_loss (ftkit.tasks; None: any task's)."""
        choose("strategy", self.strategy, list(STRATEGIES))
        choose("schedule", self.schedule, list(SCHEDULES))
        choose("optimizer", self.optimizer, OPTIMIZERS)
        choose("precision", self.precision, PRECISIONS)
        choose("device", self.device, DEVICES)
        choose("monitor", self.monitor, MONITORS if monitors is None else ("val_loss", *monitors))
        choose("peft", self.peft, PEFTS)
        choose("sampler", self.sampler, SAMPLERS)
        for name in ("epochs", "batch_size", "grad_accum", "unfreeze_every", "trainable_groups", "probe_epochs",
                     "lora_rank"):
            _positive_int(name, getattr(self, name))
        if self.strategy == "plan":
            if self.plan is None:
                raise ConfigError("strategy='plan' needs plan=[...]: for each epoch, how many of the last groups "
                                  "train (e.g. [1, 1, 3, 5]) or a list of True/False per group")
            check_plan(self.plan, self.epochs, n_groups)
        elif self.plan is not None:
            raise ConfigError(f"plan={self.plan!r} is used only with strategy='plan' (strategy={self.strategy!r}); "
                              "set strategy='plan' or leave plan=None")
        if self.strategy == "lp_ft" and self.probe_epochs >= self.epochs:
            raise ConfigError(f"probe_epochs={self.probe_epochs} leaves no epoch for fine-tuning "
                              f"(epochs={self.epochs}); lp_ft needs probe_epochs < epochs")
        _positive_float("lr", self.lr)
        _positive_float("lora_alpha", self.lora_alpha)
        if self.lora_targets is not None and (
                not isinstance(self.lora_targets, (list, tuple)) or not self.lora_targets
                or not all(isinstance(t, str) and t for t in self.lora_targets)):
            raise ConfigError(f"lora_targets={self.lora_targets!r} must be a non-empty list of layer names, "
                              "or None for the model's default targets")
        if self.lora_targets is not None and self.peft != "lora":
            raise ConfigError(f"lora_targets={self.lora_targets!r} is used only with peft='lora' (peft={self.peft!r}); "
                              "set peft='lora' or leave lora_targets=None")
        if not (isinstance(self.curriculum_start, (int, float)) and not isinstance(self.curriculum_start, bool)
                and 0 < self.curriculum_start <= 1):
            raise ConfigError(f"curriculum_start={self.curriculum_start!r} must be a fraction in (0, 1]")
        if self.sampler == "balanced" and isinstance(self.class_weights, str) and self.class_weights == "balanced":
            raise ConfigError("sampler='balanced' already draws every class equally often; class_weights="
                              f"{self.class_weights!r} would weight the small classes a second time (the square "
                              "of either alone); choose one: sampler='shuffle' with class weights, or "
                              "sampler='balanced' with class_weights=None (or your own list of costs per class)")
        if not isinstance(self.warmup_steps, int) or isinstance(self.warmup_steps, bool) or self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps={self.warmup_steps!r} must be a whole number >= 0")
        for name in ("weight_decay", "dropout", "l2sp", "label_smoothing", "min_lr_factor"):
            v = getattr(self, name)
            if name == "dropout" and v is None:
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name}={v!r} must be a number >= 0")
        if self.dropout is not None and self.dropout >= 1:
            raise ConfigError(f"dropout={self.dropout!r} must be in [0, 1), or None to keep the model's")
        if self.loss_spike is not None:
            _positive_float("loss_spike", self.loss_spike)
            if self.loss_spike <= 1:
                raise ConfigError(f"loss_spike={self.loss_spike!r} must be > 1 (a multiple of the running mean "
                                  "loss), or None to turn the guard off")
        if self.label_smoothing >= 1:
            raise ConfigError(f"label_smoothing={self.label_smoothing!r} must be in [0, 1)")
        for name in ("step_size", "cycle_steps", "max_steps_per_epoch", "early_stopping"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.clip_norm is not None:
            _positive_float("clip_norm", self.clip_norm)
        if self.lr_ratio is not None:
            _positive_float("lr_ratio", self.lr_ratio)
        if self.gamma <= 0 or self.gamma > 1:
            raise ConfigError(f"gamma={self.gamma!r} must be in (0, 1]")
        for name in ("div_factor", "final_div_factor"):
            _positive_float(name, getattr(self, name))
        if not isinstance(self.momentum, (int, float)) or isinstance(self.momentum, bool) or not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum={self.momentum!r} must be a number in [0, 1)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be a whole number >= 0")
        _augment.check(self.augment)
        for name in ("progress", "grad_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be True or False")
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise ConfigError(f"channels_last={self.channels_last!r} must be True, False or None (auto)")
        if not 0 < self.pct_start < 1:
            raise ConfigError(f"pct_start={self.pct_start!r} must be in (0, 1)")
        if self.group_lrs is not None:
            if n_groups is not None and len(self.group_lrs) != n_groups:
                raise ConfigError(f"group_lrs has {len(self.group_lrs)} values; the model has {n_groups} groups")
            for i, v in enumerate(self.group_lrs):
                _positive_float(f"group_lrs[{i}]", v)
        if n_groups is not None and self.strategy == "partial" and self.trainable_groups > n_groups:
            raise ConfigError(f"trainable_groups={self.trainable_groups} is larger than the model's "
                              f"{n_groups} layer groups; choose 1..{n_groups}")
        if self.strategy == "feature_extraction" and self.augment:
            raise ConfigError(f"augment={self.augment!r} cannot be used with strategy='feature_extraction' "
                              "(features are computed once); use strategy='head_only' to train the head with "
                              "augmentation")
        if isinstance(self.class_weights, str):
            choose("class_weights", self.class_weights, ["balanced"])
        elif self.class_weights is not None:
            if num_classes is not None and len(self.class_weights) != num_classes:
                raise ConfigError(f"class_weights has {len(self.class_weights)} values; "
                                  f"the model has {num_classes} classes")
            for i, v in enumerate(self.class_weights):
                _positive_float(f"class_weights[{i}]", v)
        return self

    def to_dict(self):
        d = dataclasses.asdict(self)
        if d["lora_targets"] is not None:
            d["lora_targets"] = list(d["lora_targets"])
        if d["plan"] is not None:   # JSON-friendly: lists, not tuples
            d["plan"] = [e if isinstance(e, int) else list(e) for e in d["plan"]]
        return d

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid fields: {', '.join(sorted(names))}")
        return cls(**d)

    def replace(self, **changes):
        """A copy with some fields changed (unknown names are refused)."""
        return self.from_dict({**self.to_dict(), **changes})


def _positive_int(name, v):
    whole_number(name, v, 1)


def _positive_float(name, v):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name}={v!r} must be a number > 0")
