"""The LR range test (Smith 2015; fastai's ``lr_find``), written once for both frameworks.

Train for a few steps while the LR grows exponentially from ``start_lr`` to
``end_lr``; record the smoothed loss; stop once it explodes. Afterwards the
model is as it was: weights, BatchNorm statistics, which groups are frozen,
train/eval modes, and the global random state (the test draws from the
config's seed), so the test leaves no trace; with ``peft="lora"`` it adds the adapters the run
would add (from the same seed, as they start), so it measures what the run trains.
"""
import math
from dataclasses import dataclass

import numpy as np

from .config import FineTuneConfig
from .peft import prepare
from .schedules import group_lrs
from .strategies import plan
from .training import check


@dataclass
class LRFinderResult:
    lrs: list
    losses: list
    suggestion: float

    def plot(self, ax=None):
        """Loss against LR on a log axis, with the suggestion marked."""
        import matplotlib.pyplot as plt
        ax = ax or plt.subplots(figsize=(6, 3.5))[1]
        ax.plot(self.lrs, self.losses)
        ax.axvline(self.suggestion, color="tab:red", ls="--", label=f"suggested {self.suggestion:.1e}")
        ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed loss", title="LR finder")
        ax.legend()
        return ax


def lr_find(model, data, config=None, *, start_lr=1e-7, end_lr=1.0, num_steps=60, smooth=0.9, diverge=4.0):
    """Run the LR range test on ``data.train``; returns lrs, losses and a suggested LR.

    The suggestion is :func:`suggest_lr` of the recorded curve. With a differential config each
    group keeps its ratio to the head's LR.
    """
    config = (config or FineTuneConfig()).replace(progress=False)
    check(model, data, config)
    prepare(model, config)   # peft="lora": the adapters the run will train (from the same seed)
    saved_mask, saved_modes = model.trainable_mask(), model.backend.models.modes(model.native)
    saved_dropout = model.dropout
    if config.dropout is not None:
        model.set_dropout(config.dropout)
    trainer = model.backend.train.Trainer(model, config)
    saved = trainer.get_weights()
    ratios = [lr / config.lr for lr in group_lrs(config, len(model.groups))]
    lrs, losses = [], []
    mult = (end_lr / start_lr) ** (1 / max(1, num_steps - 1))
    with trainer.seeded():
        if model.fresh_head:   # as the run will: the new head starts from the seed
            model.init_head(config.seed)
        trainer.set_trainable(plan(config, len(model.groups), model.new_groups)[0])   # what the run's first epoch trains
        try:
            _range_test(trainer, data, config, ratios, start_lr, mult, num_steps, smooth, diverge, lrs, losses)
        finally:
            trainer.discard_grads()
            trainer.set_weights(saved)
            model.set_trainable(saved_mask)
            model.backend.models.set_modes(model.native, saved_modes)
            if saved_dropout is not None:
                model.set_dropout(saved_dropout)
    return LRFinderResult(lrs, losses, suggest_lr(lrs, losses) if lrs else start_lr)


def suggest_lr(lrs, losses, skip_start=0.1):
    """The LR where the smoothed loss falls fastest, looking only between the first ``skip_start``
    of the points (a few raw, noisy losses: fastai skips them too) and the lowest loss (past it the
    loss is already blowing up). With too few points there, a tenth of the LR of the lowest loss
    (never below the first LR tried)."""
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    low = int(np.argmin(losses))
    first = min(max(1, int(len(lrs) * skip_start)), low)
    if low - first < 2:
        return float(max(lrs[0], lrs[low] / 10))
    grads = np.gradient(losses[first:low + 1], np.log(lrs[first:low + 1]))
    return float(lrs[first + int(np.argmin(grads))])


def _range_test(trainer, data, config, ratios, start_lr, mult, num_steps, smooth, diverge, lrs, losses):
    """The steps of the test: appends each LR and smoothed loss to ``lrs`` and ``losses``."""
    avg, best, step, epoch = 0.0, math.inf, 0, 0
    while step < num_steps:
        for batch in trainer.batches(data.train, shuffle=True, seed=config.seed + epoch):
            lr = start_lr * mult ** step
            trainer.set_lrs([lr * r for r in ratios])
            loss = trainer.train_step(batch, update=True)
            if not math.isfinite(loss):
                return
            avg = smooth * avg + (1 - smooth) * loss
            value = avg / (1 - smooth ** (step + 1))
            lrs.append(lr)
            losses.append(value)
            best = min(best, value)
            step += 1
            if value > diverge * best or step >= num_steps:
                return
        epoch += 1
