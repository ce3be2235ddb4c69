"""Small helpers shared by several test files."""

ESPRESSO = 967   # ImageNet's class of skimage's coffee photo


def ported_logits_match(pt, tfm):
    """The torch model ``pt`` and its Keras port ``tfm`` on skimage's coffee photo: the same preprocessed input
    (resize with half-pixel centres, no antialias; normalisation), the same top class (espresso) and logits
    within 1e-4 of their scale. Returns the torch logits."""
    import numpy as np
    import skimage.data
    import torch
    from ftkit.backends.tf import data as tfdata
    from ftkit.backends.torch import data as ptdata
    photo = skimage.data.coffee()[None]                       # (1, 400, 600, 3) uint8
    x_pt = ptdata.prepare(pt, torch.from_numpy(photo.transpose(0, 3, 1, 2).copy()))
    pt.native.eval()
    with torch.no_grad():
        logits_pt = pt.native(x_pt).float().numpy()
    x_tf = tfdata.prepare(tfm, photo).numpy()
    np.testing.assert_allclose(x_tf, x_pt.numpy().transpose(0, 2, 3, 1), atol=2e-5)
    logits_tf = tfm.native(x_tf, training=False).numpy()
    assert logits_pt.argmax() == logits_tf.argmax() == ESPRESSO
    scale, diff = np.abs(logits_pt).max(), np.abs(logits_pt - logits_tf).max()
    assert diff < 1e-4 * scale, f"max |diff| {diff:.2e} at logit scale {scale:.1f}"
    return logits_pt


def scale_head(model, factor):
    """Multiply the head's weights by ``factor``: a blow-up on demand, in either framework."""
    if model.framework == "torch":
        import torch
        with torch.no_grad():
            for p in model.head.parameters():
                p.mul_(factor)
    else:
        for v in model.head.weights:
            v.assign(v * factor)


def tiny_scenes(size=64, n=32):
    """``n`` scenes of ``size`` px (0-3 Fashion-MNIST items each), the same images in every split: the fixed
    set the detector tests of both frameworks train on."""
    import ftkit
    from ftkit.data import _fashion_mnist_arrays
    from ftkit.scenes import compose_scenes
    (x, y), _, _ = _fashion_mnist_arrays()
    x, y = compose_scenes(x, y, n, size=size, scale=(1.0, 1.5), seed=1)
    return ftkit.Dataset.from_arrays("tiny_scenes", (x, y), (x, y), task="detection",
                                     class_names=[f"c{i}" for i in range(10)])


def train_tiny_detector(model, scenes):
    """(model, scores before, run): the detector's head as the run starts it, scored on the fixed set, then
    15 epochs (60 steps of 8) of full fine-tuning at lr 1e-3."""
    import ftkit
    model.init_head(0)   # what the run does first with seed 0: the "before" is the head the run starts from
    before = ftkit.evaluate(model, scenes, split="train")
    run = ftkit.finetune(model, scenes, strategy="full", epochs=15, lr=1e-3, batch_size=8, progress=False)
    return model, before, run


def greedy_by_hand(model, next_logits, inputs, steps):
    """What greedy decoding must write for each of ``inputs``: starting from [CLS], the argmax of
    ``next_logits(one_input, prefix)`` (the decoder's logits after ``prefix``, computed from scratch: no
    cache) until [SEP] or ``steps`` tokens; the texts, decoded."""
    import numpy as np
    from ftkit.tasks.seq2seq import tokenizer
    tok = tokenizer(model)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    written = []
    for one in inputs:
        prefix = [cls]
        for _ in range(steps):
            nxt = int(np.argmax(next_logits(one, prefix)))
            if nxt == sep:
                break
            prefix.append(nxt)
        written.append(tok.decode(prefix[1:], skip_special_tokens=True))
    return written
