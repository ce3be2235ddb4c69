"""PyTorch input pipeline: whole splits as tensors, batches prepared on the device.

Datasets live in memory as uint8 (on the GPU itself when they are small); each
batch is sliced, copied to the device if needed (without blocking, from pinned
memory), and only then resized and normalised, so the CPU does no per-image work
(except augmentation: torchvision's transforms draw one set of parameters per call,
so they are called once per image).
"""
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from ...augment import POLICIES, policy
from ...tasks import get as get_task


RESIDENT_BYTES = 2 << 30  # a split smaller than this lives on the GPU for the whole run


def to_tensors(model, split, device):
    """A split's inputs and targets as tensors (see :func:`from_encoded`), encoded by the model's task."""
    return from_encoded(model, get_task(model.task).encode(model, split), device)


def from_encoded(model, encoded, device):
    """Rows of a split (ftkit.tasks.Encoded) as tensors: uint8 images (N, C, H, W) or a dict of token
    tensors, and the targets.

    On a GPU a small split (every built-in dataset) is copied to the device once, so batches are
    sliced there with no copy at all; a larger one stays in pinned CPU memory and each batch is
    copied without blocking.
    """
    if isinstance(encoded.inputs, dict):
        x = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in encoded.inputs.items()}
    elif model.modality == "tabular":
        x = torch.from_numpy(np.asarray(encoded.inputs, dtype=np.float32))
    else:
        arr = np.asarray(encoded.inputs)
        arr = arr[..., None] if arr.ndim == 3 else arr
        x = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(np.asarray(encoded.targets))
    if device.type == "cuda":
        parts = list(x.values()) if isinstance(x, dict) else [x]
        if sum(t.numel() * t.element_size() for t in parts) < RESIDENT_BYTES:
            return to_device(x, device), y.to(device)
        x = {k: v.pin_memory() for k, v in x.items()} if isinstance(x, dict) else x.pin_memory()
        y = y.pin_memory()
    return x, y


def take(x, idx):
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


def batch(x, idx, device):
    """Rows ``idx`` of ``x`` on ``device``: sliced where ``x`` lives when that is the device (no copy),
    else gathered into pinned memory on a GPU machine and copied without blocking."""
    first = next(iter(x.values())) if isinstance(x, dict) else x
    if first.device.type == device.type:
        return take(x, idx.to(first.device))
    rows = take(x, idx)
    if device.type == "cuda":
        rows = {k: v.pin_memory() for k, v in rows.items()} if isinstance(rows, dict) else rows.pin_memory()
    return to_device(rows, device)


def to_device(x, device):
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def prepare(model, x, *, train=False, augment=False, channels_last=False):
    """Turn a device batch into what the model takes: float, resized, 3 channels, normalised.

    Training with ``augment`` (True or a policy name, see ftkit.augment) augments the images in 0..1
    at the model's input size, before they are normalised.
    """
    if model.modality != "image":
        return x
    spec = model.input_spec
    x = unit_images(x, spec.get("image_size"))
    if train and augment:
        x = augment_images(x, augment)
    if spec.get("mean") is not None:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        mean, std = _stats(tuple(spec["mean"]), tuple(spec["std"]), x.device)
        x = (x - mean) / std
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def unit_images(x, size=None):
    """Images (N, C, H, W) in 0..255 as float32 in 0..1, resized to ``size`` x ``size`` (bilinear, no antialiasing)."""
    x = x / 255.0 if x.dtype == torch.float32 else x.float().div_(255.0)   # never change a float batch in place
    if size and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


@lru_cache(maxsize=8)
def _stats(mean, std, device):
    return (torch.tensor(mean, device=device).view(1, -1, 1, 1), torch.tensor(std, device=device).view(1, -1, 1, 1))


def augment_images(x, augment=True):
    """Augment images (N, C, H, W) in 0..1 with policy ``augment`` (True or a name in ftkit.augment.POLICIES).

    A torchvision v2 transform given a batch draws ONE set of random parameters for all of it (every
    image would get the same flip and shift), so the policy runs on each image in turn: every image gets
    its own draw, from torch's random generator (which the trainer seeds from the run's seed).
    """
    transform = _transform(policy(augment))
    return torch.stack([transform(image) for image in x])


BILINEAR = v2.InterpolationMode.BILINEAR
# operation of ftkit.augment.POLICIES -> the torchvision v2 transform that does it (fill: 0, black)
TRANSFORMS = {
    "flip": lambda: v2.RandomHorizontalFlip(p=0.5),
    "translate": lambda fraction: v2.RandomAffine(degrees=0, translate=(fraction, fraction), interpolation=BILINEAR),
    "zoom": lambda fraction: v2.RandomAffine(degrees=0, scale=(1.0, 1.0 / (1.0 - fraction)), interpolation=BILINEAR),
    "rotate": lambda degrees: v2.RandomRotation(degrees, interpolation=BILINEAR),
    "contrast": lambda fraction: v2.ColorJitter(contrast=fraction),
    "erase": lambda p, area: v2.RandomErasing(p=p, scale=area, value=0),
}


@lru_cache(maxsize=None)
def _transform(name):
    """The torchvision v2 pipeline of policy ``name``."""
    return v2.Compose([TRANSFORMS[op](**params) for op, params in POLICIES[name]])


def augment_examples(x, augment, *, n, seed, image_size=None):
    """``n`` augmented draws of each image of ``x`` (N, H, W, C) in 0..255: (N, n, H', W', C) in 0..1.

    The same steps as training: :func:`unit_images`, then :func:`augment_images`, its draws from ``seed``
    (torch's generator, forked so the global random state is left as it was).
    """
    batch = unit_images(torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))), image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = augment_images(batch.repeat_interleave(n, dim=0), augment)
    return out.permute(0, 2, 3, 1).reshape(len(x), n, *out.shape[2:], out.shape[1]).numpy()


class _SplitBatches(torch.utils.data.Dataset):
    """Indexable by a list of indices, so a DataLoader fetches a whole batch in one slice."""

    def __init__(self, split):
        self.x = split.x if isinstance(split.x, list) else torch.from_numpy(np.asarray(split.x))
        self.y = torch.from_numpy(np.asarray(split.y))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, idx):
        x = [self.x[i] for i in idx] if isinstance(self.x, list) else self.x[idx]
        return x, self.y[idx]


def raw_loader(split, batch_size, shuffle):
    """A DataLoader of raw ``(x, y)`` batches of a split (used by ``Dataset.to_torch``)."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler
    ds = _SplitBatches(split)
    sampler = BatchSampler(RandomSampler(ds) if shuffle else SequentialSampler(ds), batch_size, drop_last=False)
    return DataLoader(ds, sampler=sampler, batch_size=None, pin_memory=torch.cuda.is_available())
