"""Learning-rate schedules and differential (per-group) learning rates.

Written once, in plain Python, and used by both backends: each optimizer step
the trainer asks :func:`lr_factor` for a multiplier and sets every group's LR to
``base_lr_of_group * factor``. The formulas follow PyTorch's own schedulers
(``StepLR``, ``ExponentialLR``, ``CosineAnnealingLR``, ``CyclicLR``,
``OneCycleLR``), which the tests use as the reference.
"""
import math

SCHEDULES = {
    "constant": "keep the LR fixed: the simplest baseline",
    "step": "multiply the LR by gamma every step_size steps",
    "exponential": "multiply the LR by gamma every step: a smooth decay",
    "cosine": "follow half a cosine from the LR down to min_lr: a strong default",
    "cyclic": "go up and down between LR/div_factor and the LR (triangular)",
    "onecycle": "warm up to the LR, then anneal far below it (Smith's 1cycle)",
}


def lr_factor(step, total_steps, schedule="constant", *, warmup_steps=0, step_size=None,
              gamma=0.1, min_lr_factor=0.0, cycle_steps=None, div_factor=25.0,
              final_div_factor=1e4, pct_start=0.3):
    """Multiplier of the base LR at optimizer step ``step`` (0-based) of ``total_steps``.

    A linear warm-up over ``warmup_steps`` (from 1/warmup_steps of the LR up to
    the LR) comes first; the schedule then runs over the remaining steps.
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    step -= warmup_steps
    total = max(1, total_steps - warmup_steps)
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        size = step_size or max(1, total // 3)
        return gamma ** (step // size)
    if schedule == "exponential":
        return gamma ** step
    if schedule == "cosine":
        t = min(step, total)
        return min_lr_factor + (1 - min_lr_factor) * (1 + math.cos(math.pi * t / total)) / 2
    if schedule == "cyclic":
        half = cycle_steps or max(1, total // 4)
        cycle = math.floor(1 + step / (2 * half))
        x = abs(step / half - 2 * cycle + 1)
        low = 1.0 / div_factor
        return low + (1 - low) * max(0.0, 1 - x)
    if schedule == "onecycle":
        initial = 1.0 / div_factor
        final = initial / final_div_factor
        up_end = float(pct_start * total) - 1
        down_end = float(total) - 1
        if step <= up_end:
            return _cos_anneal(initial, 1.0, step / up_end if up_end > 0 else 1.0)
        return _cos_anneal(1.0, final, min(1.0, (step - up_end) / (down_end - up_end)))
    raise ValueError(f"unknown schedule {schedule!r}")


def _cos_anneal(start, end, pct):
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def schedule_kwargs(config):
    """The keyword arguments of :func:`lr_factor` held in a FineTuneConfig."""
    return dict(schedule=config.schedule, warmup_steps=config.warmup_steps, step_size=config.step_size,
                gamma=config.gamma, min_lr_factor=config.min_lr_factor, cycle_steps=config.cycle_steps,
                div_factor=config.div_factor, final_div_factor=config.final_div_factor,
                pct_start=config.pct_start)


def lr_curve(config, total_steps):
    """The multiplier at every step: what a live preview plot draws."""
    kw = schedule_kwargs(config)
    return [lr_factor(s, total_steps, **kw) for s in range(total_steps)]


def group_lrs(config, n_groups):
    """Base LR of each layer group, input to output (the head is last).

    Three ways, checked in this order:
    ``group_lrs`` gives one LR per group explicitly; ``lr_ratio`` spreads LRs
    geometrically from ``lr`` at the head down to ``lr / lr_ratio`` at the stem
    (fastai's ``slice(lr / ratio, lr)``); otherwise every group gets ``lr``.
    """
    if config.group_lrs is not None:
        return [float(x) for x in config.group_lrs]
    if config.lr_ratio and n_groups > 1:
        lo = config.lr / config.lr_ratio
        return [lo * config.lr_ratio ** (i / (n_groups - 1)) for i in range(n_groups)]
    return [float(config.lr)] * n_groups
