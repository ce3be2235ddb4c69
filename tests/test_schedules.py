"""The schedule math matches PyTorch's own schedulers step by step, and the group LRs are right."""
import math

import pytest
import torch

import ftkit
from ftkit.schedules import group_lrs, lr_factor

TOTAL = 40


def torch_reference(make, total=TOTAL, lr=1.0):
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"] / lr)
        opt.step()
        sched.step()
    return out


CASES = {
    "step": (dict(schedule="step", step_size=7, gamma=0.5),
             lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    "exponential": (dict(schedule="exponential", gamma=0.9),
                    lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
    "cosine": (dict(schedule="cosine", min_lr_factor=0.1),
               lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=TOTAL, eta_min=0.1)),
    "cyclic": (dict(schedule="cyclic", cycle_steps=5, div_factor=10.0),
               lambda o: torch.optim.lr_scheduler.CyclicLR(o, base_lr=0.1, max_lr=1.0, step_size_up=5,
                                                           cycle_momentum=False)),
    "onecycle": (dict(schedule="onecycle", pct_start=0.3, div_factor=25.0, final_div_factor=1e4),
                 lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=TOTAL, pct_start=0.3,
                                                               div_factor=25.0, final_div_factor=1e4,
                                                               cycle_momentum=False)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_schedule_matches_pytorch_reference(name):
    kwargs, make = CASES[name]
    ours = [lr_factor(s, TOTAL, **kwargs) for s in range(TOTAL)]
    ref = torch_reference(make)
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_constant_and_warmup():
    assert [lr_factor(s, 10) for s in range(10)] == [1.0] * 10
    warm = [lr_factor(s, 20, "cosine", warmup_steps=4) for s in range(20)]
    assert warm[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # after warm-up, cosine runs over the remaining 16 steps
    assert warm[4] == pytest.approx(1.0) and warm[12] == pytest.approx(0.5)
    ref = torch_reference(lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, end_factor=1.0,
                                                                      total_iters=3), total=4)
    assert warm[:4] == pytest.approx(ref)


def test_lr_curve_is_the_config_schedule():
    cfg = ftkit.FineTuneConfig(schedule="onecycle", lr=0.01)
    curve = ftkit.lr_curve(cfg, 30)
    assert len(curve) == 30 and max(curve) == pytest.approx(1.0, abs=0.02)
    assert curve[0] == pytest.approx(1 / 25) and curve[-1] < 1e-4


def test_group_lrs_explicit_spread_and_single():
    cfg = ftkit.FineTuneConfig(lr=1e-3)
    assert group_lrs(cfg, 4) == [1e-3] * 4
    spread = group_lrs(cfg.replace(lr_ratio=100.0), 5)
    assert spread[-1] == pytest.approx(1e-3) and spread[0] == pytest.approx(1e-5)
    ratios = [b / a for a, b in zip(spread, spread[1:])]
    assert ratios == pytest.approx([math.sqrt(10)] * 4)  # geometric
    assert group_lrs(cfg.replace(group_lrs=[1e-5, 1e-4, 1e-3]), 3) == [1e-5, 1e-4, 1e-3]
