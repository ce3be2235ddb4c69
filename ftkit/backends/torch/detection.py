"""PyTorch detector: torchvision's RetinaNet on the pre-trained MobileNetV2 (design: ftkit.tasks.detection).

torchvision supplies every piece: ``BackboneWithFPN`` (the MobileNetV2 feature maps at strides 8, 16 and 32
into a feature pyramid, with ``LastLevelP6P7`` for the two coarser levels), ``AnchorGenerator``,
``RetinaNetHead`` (class and box heads, focal loss), its box coder, matcher, loss and post-processing
(score threshold, non-maximum suppression). Images are not resized (the transform's ``min_size`` and
``max_size`` are the images' own side; torchvision's default of 800 px would make CPU training crawl) and
not normalised again (``ftkit.backends.torch.data.prepare`` did it).
"""
from functools import partial

import torch
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from ...tasks.detection import (ASPECT_RATIOS, FPN_CHANNELS, HEAD_GROUPS, MAX_DETECTIONS, NMS_IOU, NUM_SCALES, SCORE_THRESHOLD,
                                anchor_sizes)

TAPS = {"6": "stride8", "13": "stride16", "18": "stride32"}   # MobileNetV2 features index -> pyramid input
TAP_CHANNELS = [32, 96, 1280]


class Pyramid(FeaturePyramidNetwork):
    """torchvision's feature pyramid (P3-P5 from the taps, P6 and P7 from P5); ``reset_parameters`` gives
    it torchvision's initialisation again (what ``init_head(seed)`` calls)."""

    def __init__(self):
        super().__init__(TAP_CHANNELS, FPN_CHANNELS, extra_blocks=LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS))

    def reset_parameters(self):
        self.load_state_dict(Pyramid().state_dict())


class Head(RetinaNetHead):
    """torchvision's RetinaNet head (4 convolutions then class logits; 4 then box deltas, shared by the
    levels); ``reset_parameters`` gives it torchvision's initialisation again (class bias from a prior of 0.01)."""

    def __init__(self, num_classes):
        super().__init__(FPN_CHANNELS, NUM_SCALES * len(ASPECT_RATIOS), num_classes,
                         norm_layer=partial(nn.GroupNorm, HEAD_GROUPS))
        self.num_classes = num_classes

    def reset_parameters(self):
        self.load_state_dict(Head(self.num_classes).state_dict())


class Detector(RetinaNet):
    """torchvision's RetinaNet, called the way ftkit calls a model of a task with a ``"native"`` loss: a
    prepared batch (N, 3, H, W) and its padded targets (N, K, 5) in, ``(loss, detections)`` out.

    ``RetinaNet.forward`` returns losses in train mode and detections in eval mode; this forward runs the
    same steps (transform, backbone, head, anchors, ``compute_loss``, ``postprocess_detections``) and
    returns both in eval mode, so validation has a loss too. ``loss`` is the sum of the class (focal)
    and box losses, None without targets; ``detections`` (eval mode only) is (N, MAX_DETECTIONS, 6).
    """

    def forward(self, images, targets=None):
        sizes = [tuple(images.shape[-2:])] * len(images)
        wanted = None if targets is None else unpad_targets(targets)
        batch, wanted = self.transform(list(images), wanted)
        features = list(self.backbone(batch.tensors).values())
        outputs = self.head(features)
        anchors = self.anchor_generator(batch, features)
        loss = None if wanted is None else sum(self.compute_loss(wanted, outputs, anchors).values())
        if self.training:
            return loss, None
        per_level = [f.shape[2] * f.shape[3] for f in features]
        per_level = [n * (outputs["cls_logits"].shape[1] // sum(per_level)) for n in per_level]
        split = {k: list(v.split(per_level, dim=1)) for k, v in outputs.items()}
        found = self.postprocess_detections(split, [list(a.split(per_level)) for a in anchors], batch.image_sizes)
        found = self.transform.postprocess(found, batch.image_sizes, sizes)
        return loss, pad_detections(found, images.device)


def unpad_targets(targets):
    """Padded targets (N, K, 5) -> torchvision's list of ``{"boxes": float (k, 4), "labels": int64 (k,)}``."""
    out = []
    for t in targets:
        t = t[t[:, 4] >= 0].float()
        out.append({"boxes": t[:, :4], "labels": t[:, 4].long()})
    return out


def pad_detections(found, device):
    """torchvision's detections (a list of dicts) -> (N, MAX_DETECTIONS, 6) ``[x1, y1, x2, y2, score, label]``,
    padded with label -1 and score 0."""
    out = torch.zeros(len(found), MAX_DETECTIONS, 6, device=device)
    out[:, :, 5] = -1
    for i, d in enumerate(found):
        n = min(len(d["scores"]), MAX_DETECTIONS)
        out[i, :n, :4], out[i, :n, 4], out[i, :n, 5] = d["boxes"][:n], d["scores"][:n], d["labels"][:n].float()
    return out


def build(num_classes, pretrained, image_size, mobilenet):
    """The detector's parts for an FTModel. ``mobilenet(pretrained)`` -> (torchvision MobileNetV2, source)."""
    net, source = mobilenet(pretrained)
    f = net.features
    backbone = BackboneWithFPN(f, TAPS, TAP_CHANNELS, FPN_CHANNELS,
                               extra_blocks=LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS))
    backbone.fpn = Pyramid()
    head = Head(num_classes)
    anchors = AnchorGenerator(anchor_sizes(), (ASPECT_RATIOS,) * len(anchor_sizes()))
    native = Detector(backbone, num_classes, min_size=image_size, max_size=image_size, image_mean=[0.0] * 3,
                      image_std=[1.0] * 3, anchor_generator=anchors, head=head, score_thresh=SCORE_THRESHOLD,
                      nms_thresh=NMS_IOU, detections_per_img=MAX_DETECTIONS)
    groups = [("stem", [f[0], f[1]]), ("blocks_2_6", list(f[2:7])), ("blocks_7_13", list(f[7:14])),
              ("blocks_14_18", list(f[14:19])), ("neck", [backbone.fpn]), ("head", [head])]
    return {"native": native, "body": None, "head": None, "groups": groups, "source": source,
            "new": [backbone.fpn, head], "original_head": None}
