"""The LR finder leaves the model untouched and suggests a sane LR; the CLI runs end to end."""
import json
import os
import subprocess
import sys

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
