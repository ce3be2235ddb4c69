"""Data augmentation (ftkit.augment): one table of policies, built from torchvision v2 and from Keras layers.

Each policy changes images and keeps their shape; every image of a batch gets its own draw; the draws
follow the seed; ``flip_shift`` (what ``augment=True`` means) has the statistics of ftkit's earlier
hand-written flip and shift; ``augment_examples`` shows exactly what training feeds the model; bad
values are refused before training.
"""
import types

import numpy as np
import pytest

import ftkit
from ftkit import ConfigError, FineTuneConfig
from ftkit.augment import POLICIES
from test_config_fields import tiny

FRAMEWORKS = ["torch", "tf"]
SIZE = 32


def picture():
    """A 32x32 grey image: a bright 6x4 bar near the top left of a dim gradient (a flip or a shift shows)."""
    img = np.tile(np.linspace(20, 80, SIZE), (SIZE, 1))
    img[6:12, 4:8] = 250
    return img.astype(np.uint8)


def bar():
    """A 32x32 grey image, black but for a 6x4 bar of 200: its centroid shows the flip and the shift exactly."""
    img = np.zeros((SIZE, SIZE), np.uint8)
    img[6:12, 4:8] = 200
    return img


def batch_of_three():
    return np.stack([picture(), picture()[::-1], np.rot90(picture())])


# -- the table ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_operation_of_the_table_is_a_library_transform(framework):
    """Both backends build every operation of every policy from their field's library, from the one table."""
    if framework == "torch":
        from torchvision.transforms import v2
        from ftkit.backends.torch.data import TRANSFORMS as builders
        base = v2.Transform
    else:
        import keras
        from ftkit.backends.tf.data import LAYERS as builders
        base = keras.layers.Layer
    ops = {op for steps in POLICIES.values() for op, _ in steps}
    assert ops == set(builders)
    for steps in POLICIES.values():
        for op, params in steps:
            built = builders[op](**params)
            assert isinstance(built, base) and type(built).__module__.startswith(("torchvision", "keras")), built
    assert ftkit.augment.describe(True) == "flip, translate(fraction=0.1)"


# -- what a policy does ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_each_policy_changes_the_images_and_keeps_their_shape(framework, policy):
    images = batch_of_three()
    out = ftkit.augment_examples(images, policy, framework=framework, n=4, seed=0)
    assert out.shape == (3, 4, SIZE, SIZE) and out.dtype == np.uint8
    changed = [not np.array_equal(draw, img) for img, draws in zip(images, out) for draw in draws]
    assert sum(changed) >= 10, f"only {sum(changed)} of 12 draws differ from their image"
    rgb = ftkit.augment_examples(np.repeat(images[..., None], 3, -1), policy, framework=framework, n=2, seed=0,
                                 image_size=48)
    assert rgb.shape == (3, 2, 48, 48, 3) and rgb.dtype == np.uint8
    one = ftkit.augment_examples(picture() / 255.0, policy, framework=framework, n=5, seed=0)   # 0..1 floats
    assert one.shape == (5, SIZE, SIZE) and one.dtype == np.uint8


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_image_of_a_batch_gets_its_own_draw(framework, policy):
    """Eight copies of one image in one batch come out different (a library transform called on the whole
    batch would draw one flip and one shift for all of them)."""
    out = ftkit.augment_examples(picture(), policy, framework=framework, n=8, seed=0)
    distinct = len({draw.tobytes() for draw in out})
    assert distinct >= 6, f"{distinct} distinct images among 8 draws of the same image"


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_the_draws_follow_the_seed_and_leave_the_global_state_alone(framework, policy):
    import random

    import torch
    if framework == "tf":   # the Keras layers are made at their first use, which must not draw either
        ftkit._frameworks.backend("tf").data._layers.cache_clear()
    state = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    draws = [ftkit.augment_examples(batch_of_three(), policy, framework=framework, n=3, seed=s) for s in (1, 1, 2)]
    assert np.array_equal(draws[0], draws[1]), "the same seed gave other images"
    assert not np.array_equal(draws[0], draws[2]), "another seed gave the same images"
    assert random.getstate() == state[0], "Python's global random state changed"
    assert np.array_equal(np.random.get_state()[1], state[1]) and torch.equal(torch.get_rng_state(), state[2])


def old_flip_shift(x, max_shift=0.1):
    """ftkit's augmentation before the policies (PyTorch, by hand): a random horizontal flip and a shift of up
    to ``max_shift`` of the size, bilinear, zero fill. The reference flip_shift is compared with."""
    import torch
    import torch.nn.functional as F
    n = x.shape[0]
    flip = torch.rand(n) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    shift = (torch.rand(n, 2) * 2 - 1) * max_shift * 2   # affine_grid uses [-1, 1] coordinates
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def geometry(images):
    """Per image of bar() moved around: (flipped, dx, dy, brightness) from the bar's intensity centroid."""
    w = images.reshape(len(images), SIZE, SIZE).astype(np.float64)
    mass = w.sum((1, 2))
    cy = (w.sum(2) * np.arange(SIZE)).sum(1) / mass
    cx = (w.sum(1) * np.arange(SIZE)).sum(1) / mass
    flipped = cx > SIZE / 2
    dx = cx - np.where(flipped, SIZE - 1 - 5.5, 5.5)   # the bar's centre: column 5.5, row 8.5
    return flipped, dx, cy - 8.5, mass / (6 * 4 * 200)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_flip_shift_has_the_statistics_of_the_earlier_hand_written_one(framework):
    """augment=True is flip_shift, now built from the libraries: half the images flipped, each shifted by up to
    10% of its size, uniformly, as the earlier hand-written version did (torchvision shifts by whole pixels)."""
    import torch
    n = 400
    new = ftkit.augment_examples(bar(), True, framework=framework, n=n, seed=0)
    assert np.array_equal(new, ftkit.augment_examples(bar(), "flip_shift", framework=framework, n=n, seed=0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        old = old_flip_shift(torch.from_numpy(np.repeat(bar()[None, None] / 255.0, n, 0)).float())
    old = np.rint(old.numpy() * 255).clip(0, 255).astype(np.uint8)
    limit = 0.1 * SIZE   # 3.2 pixels
    for name, images in (("old", old), ("new", new)):
        flipped, dx, dy, kept = geometry(images)
        assert 0.4 <= flipped.mean() <= 0.6, f"{name}: {flipped.mean():.0%} flipped"
        assert np.allclose(kept, 1, atol=0.02), f"{name}: the bar lost or gained brightness: {kept.min():.3f}"
        for d in (dx, dy):
            assert np.abs(d).max() <= limit + 0.05, f"{name}: a shift of {np.abs(d).max():.2f} pixels"
            assert abs(d.mean()) < 0.3, f"{name}: mean shift {d.mean():.2f}"
            # uniform on [-3.2, 3.2]: standard deviation 3.2 / sqrt(3) = 1.85 (whole pixels: 1.88)
            assert 1.65 < d.std() < 2.05, f"{name}: shift spread {d.std():.2f}"
            assert np.abs(d).max() > 2.5, f"{name}: no shift larger than {np.abs(d).max():.2f} pixels"


# -- the training path ----------------------------------------------------------------------------------------

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("policy", ["flip_shift", "strong"])
def test_augment_examples_shows_what_training_feeds_the_model(framework, policy):
    """The backend's prepare() (what every training step calls) gives, un-normalised, the images that
    augment_examples shows, draw for draw; it never augments when not training."""
    model = types.SimpleNamespace(modality="image", input_spec={"image_size": 48, "mean": MEAN, "std": STD})
    images = batch_of_three()
    backend = ftkit._frameworks.backend(framework)
    if framework == "torch":
        import torch
        x = torch.from_numpy(images[:, None])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(5)
            fed = backend.data.prepare(model, x, train=True, augment=policy).numpy()
        plain = backend.data.prepare(model, x).numpy()
        not_training = backend.data.prepare(model, x, augment=policy).numpy()
        fed, plain, not_training = (a.transpose(0, 2, 3, 1) for a in (fed, plain, not_training))
    else:
        fed = backend.data.prepare(model, images, train=True, augment=policy, seed=[5, 0]).numpy()
        plain = backend.data.prepare(model, images).numpy()
        not_training = backend.data.prepare(model, images, augment=policy, seed=[5, 0]).numpy()
    assert fed.shape == plain.shape == (3, 48, 48, 3) and fed.dtype == np.float32
    assert np.array_equal(not_training, plain)
    assert not np.allclose(fed, plain)
    shown = ftkit.augment_examples(images, policy, framework=framework, n=1, seed=5, image_size=48)[:, 0]
    pixels = (fed * np.array(STD) + np.array(MEAN)) * 255   # un-normalised
    assert np.abs(pixels - shown[..., None]).max() <= 0.5 + 1e-3


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_run_with_a_policy_is_reproducible_and_differs_from_no_augmentation(framework, digits_small):
    model = tiny(framework)
    trainer = model.backend.train.Trainer(model, FineTuneConfig(progress=False))
    initial = trainer.get_weights()

    def losses(**changes):
        trainer.set_weights(initial)
        run = ftkit.finetune(model, digits_small, epochs=2, batch_size=16, lr=1e-2, progress=False, **changes)
        return [s["loss"] for s in run.history["steps"]]

    strong = losses(augment="strong")
    assert strong == losses(augment="strong"), "the same seed gave another run"
    assert strong != losses(augment=False)
    assert strong != losses(augment="standard")


# -- refusals -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_bad_policy_is_refused_before_training(framework, digits_small):
    for bad in ("wild", "Standard", 1, None, ["flip"]):
        with pytest.raises(ConfigError, match=r"augment=.*choose False, True .*flip_shift, standard, strong"):
            FineTuneConfig(augment=bad).validate()
    with pytest.raises(ConfigError, match=r"augment='standard' cannot be used with strategy='feature_extraction'"):
        FineTuneConfig(strategy="feature_extraction", augment="standard").validate()
    FineTuneConfig(strategy="head_only", augment="strong").validate()
    runs = len(ftkit.session_runs())
    with pytest.raises(ConfigError, match="augment='wild'"):
        ftkit.finetune(tiny(framework), digits_small, augment="wild", progress=False)
    assert len(ftkit.session_runs()) == runs, "a run was started"
    for kwargs in (dict(augment=False), dict(augment="wild"), dict(n=0), dict(seed=-1), dict(image_size=0)):
        with pytest.raises(ConfigError):
            ftkit.augment_examples(picture(), **{"augment": "standard", **kwargs}, framework=framework)
