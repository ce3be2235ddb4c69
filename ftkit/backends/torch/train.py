"""PyTorch training primitives; the loop itself is framework-neutral (ftkit.training).

What the hardware offers is used by default: on a CUDA GPU bf16 autocast (fp16
with a gradient scaler where bf16 is missing), channels_last for convnets,
fused AdamW, pinned memory and non-blocking copies; on the CPU channels_last
for convnets too (about 1.6x faster than NCHW here) and fused AdamW too.
"""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from ...machine import in_a_file
from ...tasks import IGNORE, get as get_task
from . import data as tdata


def pick_device(name="auto"):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from ...errors import ConfigError
        raise ConfigError("device='cuda' but no CUDA GPU is visible; use device='auto' or 'cpu'")
    return torch.device(name)


def pick_precision(precision, device):
    if device.type != "cuda":
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


def describe(config):
    """Where a run with ``config`` trains: device, its name and the precision (see ftkit.device_info)."""
    device = pick_device(config.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return {"device": device.type, "name": name, "precision": pick_precision(config.precision, device)}


class Trainer:
    """One model, one config: optimizer per-group LRs, steps, predictions and weight snapshots."""

    def __init__(self, model, config, class_weights=None):
        self.model, self.config = model, config
        self.task = get_task(model.task)
        self.net = model.native
        self.device = pick_device(config.device)
        self.precision = pick_precision(config.precision, self.device)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        is_conv = model.modality == "image"
        self.channels_last = is_conv if config.channels_last is None else config.channels_last
        self.net.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        self.class_weights = None if class_weights is None else torch.as_tensor(
            class_weights, dtype=torch.float32, device=self.device)
        self.mask = [True] * len(model.groups)
        self.notes = []   # what the trainer has to say (none here); the training loop reports it
        self._training = False
        self.features = None  # cached body features (feature_extraction)
        self._body = None     # grad_checkpointing: the body's checkpointed forward (see set_trainable)
        self._cache = {}
        self._pretrained = None
        if config.l2sp > 0:  # anchor: the weights this run starts from (pre-trained on a first run), but the new groups
            self._pretrained = [(p, p.detach().clone()) for g in model.groups[:-model.new_groups] for m in g.members
                                for p in m.parameters()]
        self._correct, self._seen = 0, 0  # training accuracy counters (see train_metrics)
        self.optimizer = self._make_optimizer()
        self.optimizer.zero_grad(set_to_none=True)

    @contextlib.contextmanager
    def seeded(self):
        """Inside: torch's random generators (dropout, augmentation) start from ``config.seed``;
        afterwards the global random state is as it was before."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)
            yield

    # -- optimizer ---------------------------------------------------------------------------------------
    def _make_optimizer(self):
        """One param group per layer group (split again: no weight decay on biases and norms)."""
        cfg, groups = self.config, []
        for gi, g in enumerate(self.model.groups):
            params = [p for m in g.members for p in m.parameters()]
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            for ps, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)):
                if ps:
                    groups.append({"params": ps, "weight_decay": wd, "lr": cfg.lr, "ftkit_group": gi})
        # fused: one kernel for the whole update, with no temporary copies of the weights (on a CPU, 5 times
        # faster than foreach for a 49-million-weight model, and 0.2 GB less at its peak)
        fast = {"fused": True} if self.device.type in ("cuda", "cpu") else {"foreach": True}
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, **fast)
        if cfg.optimizer == "adam":  # Adam with decoupled decay is AdamW; plain Adam gets none
            for g in groups:
                g["weight_decay"] = 0.0
            return torch.optim.Adam(groups, lr=cfg.lr, **fast)
        return _DecoupledSGD(groups, lr=cfg.lr, momentum=cfg.momentum)

    def set_lrs(self, lrs):
        for g in self.optimizer.param_groups:
            g["lr"] = lrs[g["ftkit_group"]]

    def set_trainable(self, mask):
        """Freeze groups (weights fixed, eval mode) and unfreeze the others (with ``config.peft``, only the
        adapters or biases of the unfrozen body groups train: ftkit.peft)."""
        self.mask = list(mask)
        self.model.set_trainable(self.mask, peft=self.config.peft)
        self._training = False
        # grad_checkpointing: the body's forward with the members of the body groups that train recomputed
        members = [m for g, t in zip(self.model.groups[:-1], self.mask) if t for m in g.members]
        self._body = self.model.backend.models.checkpointed_body(self.model, members) \
            if self.config.grad_checkpointing and members else None

    def trainable_params(self):
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)

    def _train_mode(self):
        """Train mode, except frozen groups, which stay in eval mode (BatchNorm statistics fixed)."""
        if self._training:
            return
        self._training = True
        self.net.train()
        for g, trainable in zip(self.model.groups, self.mask):
            if not trainable:
                for m in g.members:
                    m.eval()

    def _eval_mode(self):
        self._training = False
        self.net.eval()

    # -- data --------------------------------------------------------------------------------------------
    def _tensors(self, split):
        return self._encoded(split)[2:]

    def _encoded(self, split):
        """(split, its rows from the task, their input tensors, their targets), made once per split."""
        key = id(split)
        if key not in self._cache:
            encoded = self.task.encode(self.model, split)
            self._cache[key] = (split, encoded, *tdata.from_encoded(self.model, encoded, self.device))
        return self._cache[key]

    def encoded(self, split):
        """The task's rows of ``split`` (ftkit.tasks.Encoded): what ``batches`` reads and ``predict`` scores."""
        return self._encoded(split)[1]

    def rows(self, split):
        """How many rows ``batches`` reads from ``split`` in one pass (examples, or QA windows)."""
        return len(self.encoded(split))

    def cache_features(self, splits):
        """feature_extraction: run the frozen body once over each split; later steps train only the head."""
        self.features = {}
        self._eval_mode()
        for split in splits:
            x, y = self._tensors(split)
            feats = []
            with torch.no_grad(), self._autocast():
                for idx in torch.arange(len(y)).split(256):
                    xb = tdata.prepare(self.model, tdata.batch(x, idx, self.device), channels_last=self.channels_last)
                    feats.append(self.model.body(xb).float())
            self.features[id(split)] = (torch.cat(feats), y.to(self.device))

    def body_features(self, split):
        """The body's features of ``split`` as a NumPy array (N, D), computed as feature_extraction does
        (inference mode, no gradients); used by ftkit.difficulty."""
        self.cache_features([split])
        return self.features[id(split)][0].cpu().numpy()

    def batches(self, split, shuffle=False, seed=0, order=None):
        """Yield device batches ``(x, y)`` of a split (features when cached): in ``order`` (indices, which
        may repeat: see ftkit.sampling) when given, else shuffled with ``seed``, else in order."""
        x, y = self.features[id(split)] if self.features is not None else self._tensors(split)
        n, bs = len(y), self.config.batch_size
        if order is not None:
            order = torch.as_tensor(np.asarray(order, dtype=np.int64))
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
        for idx in order.split(bs):
            yield tdata.batch(x, idx, self.device), tdata.batch(y, idx, self.device)

    # -- steps -------------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _forward(self, x, train, head=None):
        if self.features is not None:
            return (head or self.model.head)(x)
        x = tdata.prepare(self.model, x, train=train, augment=train and self.config.augment,
                          channels_last=self.channels_last)
        if train and self._body is not None and head is None:
            return self.model.head(self._body(x))
        return self.net(x) if head is None else head(self.model.body(x))

    def _loss(self, logits, y):
        return per_row_loss(self.task.loss, logits, y, self.config.label_smoothing)

    def _reduce(self, per_sample, y):
        if self.class_weights is None:
            return per_sample.mean()
        w = self.class_weights[y]
        return (per_sample * w).sum() / w.sum()

    def train_step(self, batch, update=True):
        """Forward and backward one batch; step the optimizer when ``update``. Returns the batch loss.

        The optimizer never steps on a non-finite loss: the caller then calls discard_grads().
        """
        x, y = batch
        self._train_mode()
        with self._autocast():
            if self.task.loss == "native":   # the model computes its own loss (detection: ftkit.tasks)
                loss, logits = self.net(tdata.prepare(self.model, x, channels_last=self.channels_last), y)
            else:
                logits = self._forward(x, train=True)
        if self.task.loss != "native":
            loss = self._reduce(self._loss(logits, y), y)
        if self.task.counts_correct:  # counted on the device: no extra sync per step
            self._correct += (logits.argmax(-1) == y).sum()
            self._seen += len(y)
        total = loss
        if self._pretrained is not None:
            total = total + self.config.l2sp / 2 * sum(((p - p0) ** 2).sum() for p, p0 in self._pretrained
                                                         if p.requires_grad)
        scaled = total / self.config.grad_accum
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        value = loss.item()
        if update and np.isfinite(value):
            if self.config.clip_norm:
                if self.scaler:
                    self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_([p for p in self.net.parameters() if p.requires_grad],
                                               self.config.clip_norm)
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return value

    def train_metrics(self):
        """Training accuracy since the last call (classification), then reset."""
        out = {"train_accuracy": float(self._correct) / self._seen} if self._seen else {}
        self._correct, self._seen = torch.zeros((), dtype=torch.long, device=self.device), 0
        return out

    def discard_grads(self):
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def predict(self, split, head=None):
        """Mean loss and the logits of every row of a split (float32 NumPy; the task turns them into
        predictions: ftkit.tasks).

        ``head`` replaces the model's head (the original ImageNet classifier, see FTModel.original_head)."""
        self._eval_mode()
        if head is not None:
            head.to(self.device).eval()
        losses, outputs = [], []
        for x, y in self.batches(split):
            with self._autocast():
                if self.task.loss == "native":   # the model's own loss of the batch, and its outputs
                    loss, logits = self.net(tdata.prepare(self.model, x, channels_last=self.channels_last), y)
                    loss = loss.float().expand(len(y))
                else:
                    logits = self._forward(x, train=False, head=head)
                    loss = self._loss(logits, y)
            losses.append(loss.float().cpu())
            outputs.append(logits.float().cpu())
        return float(torch.cat(losses).mean()), torch.cat(outputs).numpy()

    # -- weights -----------------------------------------------------------------------------------------
    def get_weights(self, previous=None, reuse=False):
        """A copy of every weight (BatchNorm statistics included), keyed like io.save_weights. A weight still
        equal to its copy in ``previous`` (an earlier snapshot) shares that copy, so a snapshot costs memory
        only for what changed (a LoRA run changes about 2% of the weights). ``reuse=True`` overwrites
        ``previous`` instead: a changed weight is copied into its old copy, so no second snapshot is ever held
        (``previous`` is the new snapshot afterwards)."""
        out = {}
        for k, v in self.net.state_dict().items():
            old = (previous or {}).get(k)
            if old is None or old.dtype != v.dtype or old.shape != v.shape:
                out[k] = v.detach().clone()
            elif torch.equal(old, v):
                out[k] = old
            else:
                out[k] = old.copy_(v) if reuse else v.detach().clone()
        return out

    def in_a_file(self, snapshot):
        """``snapshot`` (get_weights) with its CPU weights in a temporary file's pages (ftkit.machine.in_a_file);
        a weight on a GPU, or in bfloat16 (NumPy has no such type), stays where it is."""
        moved = {k: v.numpy() for k, v in snapshot.items() if v.device.type == "cpu" and v.dtype != torch.bfloat16}
        return {**snapshot, **{k: torch.from_numpy(a) for k, a in in_a_file(moved).items()}}

    def weights_finite(self):
        """True when every floating-point weight (BatchNorm statistics included) is finite."""
        return all(bool(v.isfinite().all()) for v in self.net.state_dict().values() if v.is_floating_point())

    def set_weights(self, snapshot):
        self.net.load_state_dict(snapshot)


def per_row_loss(kind, logits, y, label_smoothing=0.0):
    """Each row's loss (float32), for a task's ``loss`` (ftkit.tasks): ``"cross_entropy"`` over the last
    axis of ``logits`` (N, ..., C) with targets ``y`` (N, ...), the mean over a row's targets that are not
    IGNORE; ``"mse"``: the squared error of the one output (N, 1) against ``y`` (N,)."""
    if kind == "mse":
        return F.mse_loss(logits.squeeze(-1).float(), y.float(), reduction="none")
    if y.ndim == 1:
        return F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=label_smoothing)
    flat = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none",
                           ignore_index=IGNORE, label_smoothing=label_smoothing).reshape(y.shape)
    kept = (y != IGNORE).reshape(len(y), -1).float()
    return (flat.reshape(len(y), -1) * kept).sum(1) / kept.sum(1).clamp(min=1.0)


class _DecoupledSGD(torch.optim.SGD):
    """SGD with momentum and *decoupled* weight decay (p -= lr * wd * p), as Keras and AdamW do it."""

    def __init__(self, groups, lr, momentum):
        for g in groups:
            g["decoupled_wd"] = g.pop("weight_decay")
        super().__init__(groups, lr=lr, momentum=momentum, weight_decay=0.0)

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            if g["decoupled_wd"]:
                for p in g["params"]:
                    if p.grad is not None:
                        p.mul_(1 - g["lr"] * g["decoupled_wd"])
        return super().step(closure)
