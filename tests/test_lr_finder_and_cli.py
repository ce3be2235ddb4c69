"""The LR finder leaves the model untouched and suggests a sane LR; the CLI runs end to end."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ftkit


def test_lr_find_restores_weights_and_suggests_inside_the_range(digits_small):
    model = ftkit.load_model("mobilenet_v2", num_classes=10, image_size=32, verbose=False)
    before = {k: v.clone() for k, v in model.native.state_dict().items()}
    res = ftkit.lr_find(model, digits_small, start_lr=1e-6, end_lr=10.0, num_steps=30)
    assert all(torch.equal(before[k], v) for k, v in model.native.state_dict().items())
    assert 5 <= len(res.lrs) <= 30 and res.lrs == sorted(res.lrs)
    assert 1e-6 <= res.suggestion <= 10.0
    # the loss falls somewhere along the way before it blows up
    assert min(res.losses) < res.losses[0]


def _cli(*args, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ftkit.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_cli_finetune_tf_progressive_end_to_end(tmp_path):
    out = tmp_path / "run"
    r = _cli("finetune", "--model", "mobilenet_v2", "--data", "fashion_mnist", "--framework", "tf",
             "--strategy", "progressive", "--epochs", "3", "--subset", "6", "--image-size", "32",
             "--progress", "false", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("epoch ") >= 3 and "test: accuracy" in r.stdout
    meta = json.loads((out / "run.json").read_text())
    assert meta["framework"] == "tf" and len(meta["history"]["epochs"]) == 3
    masks = [e["trainable_mask"] for e in meta["history"]["epochs"]]
    assert [sum(m) for m in masks] == [1, 2, 3]
    assert (out / "weights.safetensors").exists()
    assert json.loads((out / "config.json").read_text())["strategy"] == "progressive"


def test_cli_refuses_bad_input_with_a_clear_message():
    r = _cli("finetune", "--model", "mobilenet_v2", "--data", "digits", "--lr", "0", "--subset", "2")
    assert r.returncode == 2 and "lr=0" in r.stderr and "> 0" in r.stderr
    r = _cli("finetune", "--model", "mobilenet_v3", "--data", "digits")
    assert r.returncode == 2 and "mobilenet_v2" in r.stderr


def test_cli_doctor_reports_offline_resources():
    r = _cli("doctor")
    assert r.returncode == 0, r.stderr
    for word in ("torch", "tensorflow", "weights mobilenet_v2", "ok:", "fashion_mnist", "GPU"):
        assert word in r.stdout


def test_suggestion_ignores_the_noisy_first_points_and_the_blow_up():
    """A curve whose first two smoothed points fall steeply by noise, then a real descent, then a blow-up:
    the suggestion is inside the real descent (the old rule chose the first LR)."""
    from ftkit.lr_finder import suggest_lr
    lrs = list(np.logspace(-7, 0, 60))
    x = np.log10(lrs)
    losses = list(2.3 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) * 20, 0))
    losses[0], losses[1] = 3.5, 2.4     # the first, barely averaged losses: a steep "fall"
    lr = suggest_lr(lrs, losses)
    assert 1e-4 < lr < 1e-2, lr         # the descent is centred on 1e-3
    assert lr < lrs[int(np.argmin(losses))]
    # too few points before the lowest loss: a tenth of its LR
    assert suggest_lr([1e-6, 1e-5, 1e-4, 1e-3], [2.0, 1.0, 2.0, 9.0]) == pytest.approx(1e-6)
    assert suggest_lr([1e-5, 1e-4, 1e-3], [1.0, 2.0, 9.0]) == pytest.approx(1e-5)   # never below the range


def test_spike_guard_catches_a_loss_too_high_from_the_first_steps():
    from ftkit.training import _SpikeGuard
    guard = _SpikeGuard(5.0, [])
    assert not guard.spiked(2.3)          # the first loss is the reference
    assert guard.spiked(2.3 * 5 + 1)      # step 2: already far above it (an LR too high from the start)
    calm = _SpikeGuard(5.0, [])
    for loss in [2.3, 2.0, 1.8, 3.0, 2.5] * 4:
        assert not calm.spiked(loss)
    assert calm.spiked(50.0)              # later: against the running mean
