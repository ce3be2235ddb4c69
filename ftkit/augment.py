"""Data augmentation: named policies of random image operations, one switch for both frameworks.

``FineTuneConfig(augment=...)`` takes ``False`` (no augmentation), ``True`` (the same as ``"flip_shift"``)
or the name of a policy in :data:`POLICIES`. A policy is a list of operations with their parameters,
written once here. Each backend builds it from its framework's own library, one library class per
operation (``ftkit/backends/torch/data.py`` and ``ftkit/backends/tf/data.py``):

=============  =================================================  ===============================================
operation      torchvision.transforms.v2 (PyTorch)                keras.layers (TensorFlow)
=============  =================================================  ===============================================
flip           RandomHorizontalFlip(p=0.5)                        RandomFlip("horizontal")
translate f    RandomAffine(degrees=0, translate=(f, f))          RandomTranslation(f, f)
zoom f         RandomAffine(degrees=0, scale=(1, 1 / (1 - f)))    RandomZoom((-f, 0))
rotate d       RandomRotation(d)                                  RandomRotation(d / 360)
contrast f     ColorJitter(contrast=f)                            RandomContrast((f, f), value_range=(0, 1))
erase p, a     RandomErasing(p, scale=a, value=0)                 RandomErasing((p, p), scale=a, fill_value=0)
=============  =================================================  ===============================================

``translate f`` shifts by up to ``f`` of the width and height; ``zoom f`` zooms in, keeping between
``1 - f`` and all of the image's width and height, around its centre; ``rotate d`` turns by up to ``d``
degrees either way; ``contrast f`` multiplies the contrast by a factor in ``[1 - f, 1 + f]``; ``erase p, a``
blacks out, with probability ``p``, a rectangle covering a fraction ``a = (min, max)`` of the image.

Training applies a policy to each training batch (never to validation or test images) after the images
are scaled to 0..1 and resized to the model's input size, and before they are normalised. What comes into
view from outside the image is black (0). Every image of a batch gets its own random draw, and the draws
come from the run's seed, so a run is reproducible. :func:`augment_examples` shows what a policy does,
through the same code.

The two libraries agree on each operation and its parameter, and differ in details: torchvision shifts
by whole pixels, Keras by fractions of one; torchvision draws the zoom factor uniformly, Keras the
fraction of the image it keeps; on colour images torchvision's contrast pulls toward the grey mean of
the image, Keras' toward each channel's mean (on grey images they agree); torchvision's erased rectangle
has a random area and aspect ratio, Keras' a random height and width. Brightness is left out: torchvision
multiplies the pixels by a factor, Keras adds an offset, so the same parameter would mean two things.
"""
from .errors import ConfigError, whole_number

POLICIES = {
    # random horizontal flip and a shift of up to 10% (what augment=True means)
    "flip_shift": (("flip", {}), ("translate", {"fraction": 0.1})),
    # a random crop-and-resize (zoom in, then shift), a flip and a small rotation
    "standard": (("flip", {}), ("zoom", {"fraction": 0.2}), ("rotate", {"degrees": 15}),
                 ("translate", {"fraction": 0.1})),
    # standard, then contrast jitter and random erasing (Zhong et al. 2020)
    "strong": (("flip", {}), ("zoom", {"fraction": 0.2}), ("rotate", {"degrees": 15}),
               ("translate", {"fraction": 0.1}), ("contrast", {"fraction": 0.4}),
               ("erase", {"p": 0.5, "area": (0.02, 0.2)})),
}


def check(augment):
    """Return ``augment`` if it is a valid value of ``FineTuneConfig.augment``, else raise a ConfigError."""
    if isinstance(augment, bool) or (isinstance(augment, str) and augment in POLICIES):
        return augment
    raise ConfigError(f"augment={augment!r} is not valid; choose False, True (= 'flip_shift') or a policy: "
                      f"{', '.join(POLICIES)}")


def policy(augment):
    """The policy name that ``augment`` stands for: None for False, ``"flip_shift"`` for True."""
    check(augment)
    if augment is False:
        return None
    return "flip_shift" if augment is True else augment


def describe(augment):
    """One line that says what ``augment`` does, e.g. ``"flip, translate(fraction=0.1)"``."""
    name = policy(augment)
    if name is None:
        return "no augmentation"
    return ", ".join(op + (f"({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")
                     for op, params in POLICIES[name])


def augment_examples(images, augment="standard", framework="torch", *, n=8, seed=0, image_size=None):
    """``n`` augmented versions of each image, made by the code that augments the training batches.

    ``images`` is one image (H, W) or (H, W, C), or a batch (N, H, W[, C]), in 0..255 or 0..1 (as
    ``model.predict`` takes them). ``augment`` is True or a policy name (see :data:`POLICIES`).
    ``image_size`` resizes the images first, as training resizes them to the model's input size
    (None keeps their size). The draws come from ``seed``; the global random state is left alone.

    Returns uint8 images in 0..255, not normalised, with the channels of the input:
    shape (N, n, H, W[, C]) for a batch, (n, H, W[, C]) for one image. Ready for ``plt.imshow``.
    """
    import numpy as np
    from . import _frameworks
    from .data import checked_inputs
    from .training import _one_image
    name = policy(augment)
    if name is None:
        raise ConfigError(f"augment=False shows nothing; choose True or a policy: {', '.join(POLICIES)}")
    whole_number("n", n, 1)
    whole_number("seed", seed, 0)
    if image_size is not None:
        whole_number("image_size", image_size, 1, ", or None to keep the size")
    given = np.asarray(images)
    batch = _one_image(given)                                # one image becomes a batch of one
    single = batch.ndim == given.ndim + 1
    batch = np.asarray(checked_inputs(batch).test.x)         # checked, on the 0..255 scale
    grey = batch.ndim == 3
    out = _frameworks.backend(framework).data.augment_examples(batch[..., None] if grey else batch, name,
                                                               n=n, seed=seed, image_size=image_size)
    out = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
    out = out[..., 0] if grey else out
    return out[0] if single else out
