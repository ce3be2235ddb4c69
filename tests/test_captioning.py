"""Image captioning (ftkit.tasks.captioning): the MobileNetV2 encoder and the MiniLM decoder it starts from,
its groups, a fixed batch learned by the one training loop, greedy and beam decoding, saved runs and bad
input, in both frameworks."""
import numpy as np
import pytest

import ftkit
from ftkit import ConfigError, DataError
from ftkit.scenes import caption, compose_scenes
from ftkit.tasks.seq2seq import round_trip, tokenizer

from _helpers import greedy_by_hand

FRAMEWORKS = ["torch", "tf"]
SIZE = 64          # small images: the fixed-batch tests learn 8 scenes by heart, fast
pytestmark = pytest.mark.xdist_group("captioning")   # one worker: the learned model of each framework is made once


def _scenes(n, seed):
    from ftkit.data import FASHION_CLASSES, _fashion_mnist_arrays
    (x, y), _, _ = _fashion_mnist_arrays()
    images, found = compose_scenes(x[:2000], y[:2000], n, size=SIZE, objects=(1, 2), empty=0.0, scale=(0.8, 1.2),
                                   seed=seed)
    return images, [caption(f["boxes"], f["labels"], FASHION_CLASSES, SIZE) for f in found]


IMAGES, CAPTIONS = _scenes(8, seed=3)


def scenes(x, y, name="scenes"):
    split = ftkit.Split(x, y)
    return ftkit.Dataset(name, {"train": split, "val": split, "test": split}, task="captioning", modality="image")


def load(framework, **kw):
    return ftkit.load_model("mobilenet_v2", framework=framework, task="captioning", image_size=SIZE, max_length=16,
                            verbose=False, **kw)


@pytest.fixture(scope="module", params=FRAMEWORKS)
def learned(request):
    """A warm-started model after 120 steps on one fixed batch of 8 scenes (full fine-tuning, AdamW, the LR
    annealed by a cosine). (With a constant LR the last steps wandered: PyTorch wrote 4 to 8 of the 8 captions
    exactly, depending on its thread count and on fused or foreach AdamW. Annealed, it wrote 8 in all four.)"""
    model = load(request.param)
    batch = ftkit.Split(IMAGES, CAPTIONS)
    data = ftkit.Dataset("scenes", {"train": ftkit.Split(np.concatenate([IMAGES] * 120), CAPTIONS * 120),
                                    "val": batch, "test": batch}, task="captioning", modality="image")
    lrs = [2e-4] * (len(model.groups) - 2) + [5e-4] * 2   # the copied groups, then the two new ones
    run = ftkit.finetune(model, data, ftkit.FineTuneConfig(epochs=1, batch_size=8, group_lrs=lrs, schedule="cosine",
                                                          progress=False))
    return model, run


# ------------------------------------------------------------------------------------ the warm start

def _starts_torch(model):
    """(name, expected, actual) for every copied weight: MobileNetV2's ImageNet weights and MiniLM's layers."""
    from transformers import AutoModel
    from ftkit.backends.torch.models import _mobilenet_net
    net = model.native
    mobilenet = _mobilenet_net(True)[0].features.state_dict()
    out = [(f"features.{k}", v.numpy(), net.features.state_dict()[k].numpy()) for k, v in mobilenet.items()]
    minilm = AutoModel.from_pretrained(ftkit.models.minilm_path()).state_dict()
    dec = net.decoder.state_dict()
    return out + [(k, v.numpy(), dec[f"bert.{k}"].numpy()) for k, v in minilm.items() if not k.startswith("pooler")]


def _starts_tf(model):
    from ftkit.backends.tf.models import _bert_backbone, _mobilenet_encoder
    from ftkit.backends.tf.seq2seq import COPIED
    net = model.native
    body = _mobilenet_encoder(True, SIZE)[0]
    out = [(w.path, w.numpy(), v.numpy()) for w, v in zip(_features(body).weights, net.features.weights)]
    ref, _ = _bert_backbone("minilm", True)
    pairs = [(ref.token_embedding, net.token_embedding), (ref.position_embedding, net.position_embedding),
             (ref.segment_embedding, net.segment_embedding), (ref.embeddings_layer_norm, net.embeddings_norm)]
    pairs += [(getattr(r, name), getattr(d, name)) for r, d in zip(ref.transformer_layers, net.decoder_layers)
              for name in COPIED]
    return out + [(w.path, w.numpy(), v.numpy()) for r, d in pairs for w, v in zip(r.weights, d.weights)]


def _features(body):
    import keras
    return keras.Model(body.input, body.get_layer("out_relu").output)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_encoder_is_the_pretrained_mobilenet_and_the_decoder_starts_from_minilm(framework):
    model = load(framework)
    copied = {"torch": _starts_torch, "tf": _starts_tf}[framework](model)
    for name, want, got in copied:
        assert np.array_equal(got, want), f"{name} differs from the pre-trained weights"
    # MiniLM: embeddings (5 tensors with the norm), 6 layers of 16 self-attention and feed-forward tensors
    text = 5 + 6 * 16
    assert len(copied) > text + 150   # and MobileNetV2's convolutions and BatchNorms (with their statistics)
    assert model.group_names == ["stem", "blocks_2_6", "blocks_7_13", "blocks_14_18", "decoder_embeddings",
                                 "decoder_layers", "cross_attention", "output"]
    assert model.new_groups == 2   # the image tokens and cross-attention; the output transform


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_weight_is_in_exactly_one_group_and_both_frameworks_build_the_same_model(framework):
    model = load(framework)
    weights = (lambda m: list(m.parameters())) if framework == "torch" else (lambda m: list(m.weights))
    owner = {}
    for g in model.groups:
        for m in g.members:
            for p in weights(m):
                assert owner.get(id(p), g.name) == g.name, f"a weight of {g.name} is also in {owner[id(p)]}"
                owner[id(p)] = g.name
    assert set(owner) == {id(p) for p in weights(model.native)}, "some weights are in no group"
    # 2x2 image cells at 64 px; the same count of parameters (BatchNorm statistics aside) in both frameworks
    assert sum(model.param_counts()) == 29_015_354


# ------------------------------------------------------------------------------------ learning and decoding

def test_a_fixed_batch_is_learned_and_greedy_decoding_writes_the_captions(learned):
    model, run = learned
    losses = [s["loss"] for s in run.history["steps"]]
    assert losses[-1] < 0.1 * losses[0], f"loss {losses[0]:.2f} -> {losses[-1]:.2f}"
    out = ftkit.generate(model, IMAGES)
    want = round_trip(tokenizer(model), CAPTIONS)
    assert sum(o == w for o, w in zip(out, want)) >= 6, list(zip(out, want))
    scores = ftkit.evaluate(model, scenes(IMAGES, CAPTIONS), "test")
    assert scores["bleu"] > 75 and scores["exact_match"] >= 6 / 8


def _last_logits(model, images, prefix):
    """The decoder's logits for the token after ``prefix``, computed from scratch (no cache)."""
    if model.framework == "torch":
        import torch
        from ftkit.backends.torch.data import prepare
        net = model.native.eval()
        with torch.no_grad():
            x = prepare(model, torch.from_numpy(images).permute(0, 3, 1, 2))
            return net.logits(x, torch.tensor([prefix]))[0, -1].numpy()
    import keras
    from ftkit.backends.tf.data import prepare
    net = model.native
    x = prepare(model, keras.ops.convert_to_tensor(images))
    return np.asarray(net.decode(keras.ops.convert_to_tensor([prefix], "int32"), *net.encode(x)))[0, -1]


def test_beam_search_with_one_beam_is_greedy_and_greedy_is_the_argmax_at_every_step(learned):
    model, _ = learned
    greedy = ftkit.generate(model, IMAGES, num_beams=1)
    assert ftkit.predict(model, IMAGES) == greedy
    written = greedy_by_hand(model, lambda image, prefix: _last_logits(model, image[None], prefix), IMAGES, 16)
    assert greedy == written
    beams = ftkit.generate(model, IMAGES, num_beams=4)
    assert sum(b == g for b, g in zip(beams, greedy)) >= 6
    assert ftkit.generate(model, IMAGES[0]) == greedy[:1]   # one image (H, W, C)


def test_a_saved_captioning_run_loads_back_and_decodes_identically(learned, tmp_path):
    model, run = learned
    run.save(tmp_path / "run")
    back = ftkit.load_run(str(tmp_path / "run"))
    assert back.model.task == "captioning" and back.model.group_names == model.group_names
    assert back.model.input_spec["image_size"] == SIZE
    for beams in (1, 3):
        assert ftkit.generate(back.model, IMAGES, num_beams=beams) == ftkit.generate(model, IMAGES, num_beams=beams)


# ------------------------------------------------------------------------------------ bad input

def test_images_of_the_wrong_shape_and_bad_captions_are_refused_before_training():
    model = load("torch")
    config = ftkit.FineTuneConfig(epochs=1, progress=False)
    with pytest.raises(DataError, match=r"images must have shape \(N, H, W\) or \(N, H, W, C\) with C=1 or 3"):
        ftkit.finetune(model, scenes(np.zeros((2, SIZE, SIZE, 5), np.uint8), ["a bag", "a coat"]), config)
    with pytest.raises(DataError, match=r"images must have shape"):
        ftkit.generate(model, np.zeros((2, SIZE), np.uint8))
    with pytest.raises(DataError, match="example 1: the caption is empty"):
        scenes(IMAGES[:2], ["a bag", " "])
    with pytest.raises(DataError, match="has 2 inputs but 1 labels"):
        scenes(IMAGES[:2], ["a bag"])
    with pytest.raises(DataError, match="has '🙂', which the model's vocabulary cannot write"):
        ftkit.finetune(model, scenes(IMAGES[:1], ["a bag 🙂"]), config)
    with pytest.raises(DataError, match=r"more than the model writes \(max_length=16\)"):
        ftkit.finetune(model, scenes(IMAGES[:1], [" ".join(["bag"] * 20)]), config)


def test_bad_settings_are_refused():
    model = load("torch")
    with pytest.raises(ConfigError, match="num_beams=0 must be a whole number >= 1"):
        ftkit.generate(model, IMAGES, num_beams=0)
    with pytest.raises(ConfigError, match="max_length=0 must be a whole number >= 1"):
        ftkit.generate(model, IMAGES, max_length=0)
    assert model.native.decoding == {"num_beams": 1, "max_length": 16}
    for field, value in (("augment", "flip_shift"), ("label_smoothing", 0.1), ("peft", "lora")):
        with pytest.raises(ConfigError, match=f"{field}=.*task 'captioning'"):
            ftkit.finetune(model, scenes(IMAGES[:2], CAPTIONS[:2]),
                           ftkit.FineTuneConfig(epochs=1, progress=False, **{field: value}))
    with pytest.raises(ConfigError, match="a captioning model writes text, it has no classes"):
        ftkit.load_model("mobilenet_v2", task="captioning", num_classes=3)
    with pytest.raises(ConfigError, match="task='captioning' reads images with mobilenet_v2"):
        ftkit.load_model("minilm", task="captioning")


def test_captions_name_the_items_their_count_and_where_they_are():
    names = ftkit.data.FASHION_CLASSES
    bag, sneaker, trouser = names.index("Bag"), names.index("Sneaker"), names.index("Trouser")
    assert caption([[10, 10, 30, 30]], [bag], names, 96) == "a bag at the top left"
    assert caption([[40, 40, 56, 56]], [bag], names, 96) == "a bag in the middle"
    assert caption([[0, 0, 20, 20], [60, 5, 80, 25], [30, 60, 50, 80]], [sneaker, sneaker, bag], names, 96) == \
        "two sneakers and a bag, the sneakers above the bag"
    assert caption([[0, 40, 20, 60], [60, 40, 80, 60]], [trouser, bag], names, 96) == \
        "a pair of trousers and a bag, the pair of trousers left of the bag"
    assert caption([[0, 40, 20, 60], [60, 45, 80, 65]], [bag, bag], names, 96) == "two bags side by side"
    assert caption(np.zeros((0, 4)), [], names, 96) == "an empty canvas"
    data = ftkit.load_dataset("fashion_captions", verbose=False)
    assert data.task == "captioning" and data.splits["train"].x.shape == (3000, 128, 128, 1)
    again = ftkit.scenes.fashion_captions(sizes={"train": 10, "val": 1, "test": 1})["train"]
    assert again[1] == data.splits["train"].y[:10]   # seeded: the same scenes and captions
    assert np.array_equal(again[0], data.splits["train"].x[:10])
