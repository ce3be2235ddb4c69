"""The two backends compute the same thing: same weights, same preprocessing, same outputs.

torch runs first, then TensorFlow, in this process (``import ftkit`` imports triton before TensorFlow,
which avoids the known crash).
"""
import numpy as np
import pytest

import ftkit
from _helpers import ported_logits_match

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("keras_hub")

SENTENCES = ["A gripping, beautifully shot film.", "Dull, overlong and badly acted.",
             "The plot twists kept me guessing until the very end.", "ok"]


def test_mobilenet_v2_imagenet_logits_match():
    pytest.importorskip("skimage")
    pt = ftkit.load_model("mobilenet_v2", framework="torch", num_classes=None, image_size=224, verbose=False)
    tfm = ftkit.load_model("mobilenet_v2", framework="tf", num_classes=None, image_size=224, verbose=False)
    logits_pt = ported_logits_match(pt, tfm)
    p_pt = np.exp(logits_pt - logits_pt.max()) / np.exp(logits_pt - logits_pt.max()).sum()
    assert p_pt.max() > 0.95
    # the backends' parameter counts agree group by group
    assert pt.param_counts() == tfm.param_counts()
    assert pt.group_names == tfm.group_names


def test_minilm_embeddings_match():
    pytest.importorskip("transformers")
    from ftkit.text import tokenize
    pt = ftkit.load_model("minilm", framework="torch", num_classes=2, max_length=32, verbose=False)
    import torch
    tok = tokenize(pt, SENTENCES)
    pt.body.eval()
    with torch.no_grad():
        emb_pt = pt.body({k: torch.from_numpy(v.astype(np.int64)) for k, v in tok.items()}).numpy()

    tfm = ftkit.load_model("minilm", framework="tf", num_classes=2, max_length=32, verbose=False)
    from ftkit.backends.tf import data as tfdata
    split = ftkit.Split(list(SENTENCES), np.zeros(len(SENTENCES), dtype=np.int64))
    x, _ = tfdata.to_tensors(tfm, split)
    np.testing.assert_array_equal(x["token_ids"], tok["input_ids"])
    emb_tf = tfm.body(x, training=False).numpy()

    assert emb_pt.shape == emb_tf.shape == (len(SENTENCES), 384)
    diff = np.abs(emb_pt - emb_tf).max()
    assert diff < 1e-4, f"max |diff| {diff:.2e}"
    assert pt.param_counts() == tfm.param_counts()
    assert pt.group_names == tfm.group_names


def test_losses_match_torch():
    """Cross-entropy with label smoothing and class weights: the same numbers as torch's."""
    import torch
    import torch.nn.functional as F
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 4)).astype(np.float32) * 3
    y = rng.integers(0, 4, size=16)
    w = np.array([0.5, 1.0, 2.0, 3.0], np.float32)
    from ftkit.backends.tf.train import _reduce, per_row_loss
    got = float(_reduce(tuple(w), per_row_loss("cross_entropy", logits, y, 0.1), y))
    per = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y), reduction="none", label_smoothing=0.1)
    tw = torch.from_numpy(w)[torch.from_numpy(y)]
    want = float((per * tw).sum() / tw.sum())
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_per_row_losses_over_positions_match_across_backends(smoothing):
    """The task seam's cross-entropy over the last axis for targets with positions (QA: start and end over
    the tokens, (N, 2, tokens); with IGNORE where a position has no target): each row's loss is the mean
    over its kept positions, the same in both backends, and equal to the hand-computed value."""
    import torch
    from ftkit.backends.tf.train import per_row_loss as tf_loss
    from ftkit.backends.torch.train import per_row_loss as torch_loss
    from ftkit.tasks import IGNORE
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(5, 2, 12)) * 2).astype(np.float32)
    y = rng.integers(0, 12, size=(5, 2))
    y[1, 1] = IGNORE
    y[3] = IGNORE   # a row without targets: loss 0, not NaN
    a = tf_loss("cross_entropy", logits, y, smoothing).numpy()
    b = torch_loss("cross_entropy", torch.from_numpy(logits), torch.from_numpy(y), smoothing).numpy()
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = []
    for r in range(5):
        kept = [(k, y[r, k]) for k in range(2) if y[r, k] != IGNORE]
        terms = [-(1 - smoothing) * logp[r, k, t] - smoothing * logp[r, k].mean() for k, t in kept]
        want.append(np.mean(terms) if terms else 0.0)
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, want, rtol=1e-5, atol=1e-6)
