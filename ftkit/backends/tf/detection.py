"""TensorFlow (Keras 3) detector: RetinaNet from keras-hub's parts on the ported MobileNetV2 (design:
ftkit.tasks.detection). The mirror of ``ftkit/backends/torch/detection.py``.

The backbone is the MobileNetV2 the classifier uses (``models._torchvision_layout_mobilenet``, torchvision's
ImageNet weights ported in), tapped where torchvision's ``features[6]``, ``features[13]`` and
``features[18]`` end: the Keras layers ``block_5_add`` (32 channels, stride 8), ``block_12_add`` (96, stride
16) and ``out_relu`` (1280, stride 32). keras-hub 0.32 supplies the rest: ``FeaturePyramid`` (P3-P5 from the
taps, P6 and P7 from the pyramid's P5 as torchvision's ``LastLevelP6P7`` does: ``use_p5=False``),
``PredictionHead`` (the class and box heads, shared by the levels, with group normalisation as the torch
heads have), ``AnchorGenerator``,
``RetinaNetLabelEncoder`` (anchor matching at IoU 0.5 / 0.4, box deltas in center_xywh) and
``NonMaxSuppression``; the loss is ``RetinaNetObjectDetector.compute_loss``'s (focal loss, Huber box loss,
both summed over the anchors and divided by the batch's matched anchors) with ``ObjectDetector.compile``'s
default losses.

Why not ``keras_hub.models.RetinaNetBackbone`` / ``RetinaNetObjectDetector`` themselves: in keras-hub 0.32
they fix the widths at 256 (``RetinaNetBackbone`` builds its ``FeaturePyramid`` without ``num_filters``;
``RetinaNetObjectDetector`` builds both heads with ``num_filters=256``), so the design's FPN_CHANNELS (64,
the torch detector's width) cannot be had from them; and ``RetinaNetObjectDetector`` gives the
prior-probability bias (-log(99), so every class starts at p = 0.01) to the *box* head instead of the
class head, so its class logits start at 0 (p = 0.5 on every anchor) and the first focal losses are
huge. Its loss also needs ``compile()`` and Keras' loss trackers (variables that would join the saved
weights). This module assembles the same network from the same keras-hub layers, with FPN_CHANNELS and
the prior on the class head, and computes the same loss by hand.

Differences from the torch detector (torchvision), all from the libraries: keras-hub rounds anchor sides
to whole pixels and uses a Huber box loss (torchvision: L1) and a focal loss averaged over the classes
without alpha balancing (torchvision: summed, alpha 0.25); its suppression is class-agnostic (one label,
the best class, per box; torchvision suppresses per class). One deliberate change from
``RetinaNetObjectDetector.compute_loss``: a batch without any object still trains on its background
anchors (keras-hub zeroes the whole loss then; ftkit's task says such images train, as torchvision's do).
"""
from ... import _frameworks
from ...tasks.detection import (ANCHOR_SIZE, ASPECT_RATIOS, FPN_CHANNELS, HEAD_CONVS, MAX_DETECTIONS, MAX_LEVEL,
                                MIN_LEVEL, NMS_IOU, NUM_SCALES, SCORE_THRESHOLD)

tf = _frameworks.tensorflow()
import keras  # noqa: E402
from keras import ops  # noqa: E402
from keras_hub.layers import AnchorGenerator, NonMaxSuppression  # noqa: E402
from keras_hub.src.models.retinanet.feature_pyramid import FeaturePyramid  # noqa: E402
from keras_hub.src.models.retinanet.prediction_head import PredictionHead  # noqa: E402
from keras_hub.src.models.retinanet.retinanet_label_encoder import RetinaNetLabelEncoder  # noqa: E402

TAPS = {"P3": "block_5_add", "P4": "block_12_add", "P5": "out_relu"}   # = torchvision features[6], [13], [18]
PRIOR_PROBABILITY = 0.01   # a new class head starts at this probability for every class (RetinaNet's)


class RetinaNet(keras.Model):
    """RetinaNet as a functional keras.Model: a prepared image batch (N, S, S, 3) in, ``{"bbox_regression":
    (N, anchors, 4), "cls_logits": (N, anchors, classes)}`` out (keras-hub's outputs), plus
    :meth:`loss_and_outputs`, which ftkit's trainer calls (the ``"native"`` loss of ftkit.tasks)."""

    def __init__(self, encoder, num_classes, image_size, **kwargs):
        anchors = AnchorGenerator("xyxy", min_level=MIN_LEVEL, max_level=MAX_LEVEL, num_scales=NUM_SCALES,
                                  aspect_ratios=list(ASPECT_RATIOS), anchor_size=ANCHOR_SIZE, name="anchor_generator")
        per_position = anchors.num_base_anchors
        pyramid = FeaturePyramid(min_level=MIN_LEVEL, max_level=MAX_LEVEL, use_p5=False, num_filters=FPN_CHANNELS,
                                 name="fpn")
        class_head = PredictionHead(output_filters=per_position * num_classes, num_filters=FPN_CHANNELS,
                                    num_conv_layers=HEAD_CONVS, use_prior_probability=True,
                                    prior_probability=PRIOR_PROBABILITY, use_group_norm=True, name="classification_head")
        box_head = PredictionHead(output_filters=per_position * 4, num_filters=FPN_CHANNELS,
                                  num_conv_layers=HEAD_CONVS, use_group_norm=True, name="box_head")
        images = keras.Input((image_size, image_size, 3), name="images")
        levels = pyramid(encoder(images))
        boxes, classes = [], []
        for level in levels:   # P3 .. P7, as keras-hub's RetinaNetObjectDetector concatenates them
            boxes.append(keras.layers.Reshape((-1, 4), name=f"box_pred_{level}")(box_head(levels[level])))
            classes.append(keras.layers.Reshape((-1, num_classes), name=f"cls_pred_{level}")(
                class_head(levels[level])))
        outputs = {"bbox_regression": keras.layers.Concatenate(axis=1, name="bbox_regression")(boxes),
                   "cls_logits": keras.layers.Concatenate(axis=1, name="cls_logits")(classes)}
        super().__init__(inputs=images, outputs=outputs, **kwargs)
        self.encoder, self.pyramid, self.class_head, self.box_head = encoder, pyramid, class_head, box_head
        self.num_classes, self.image_size = num_classes, image_size
        self.anchor_generator = anchors
        self.label_encoder = RetinaNetLabelEncoder(anchors, bounding_box_format="xyxy", encoding_format="center_xywh",
                                                   name="label_encoder")
        self.prediction_decoder = NonMaxSuppression(bounding_box_format="xyxy", from_logits=True,
                                                    iou_threshold=NMS_IOU, confidence_threshold=SCORE_THRESHOLD,
                                                    max_detections=MAX_DETECTIONS, name="prediction_decoder")
        # ObjectDetector.compile's default losses ("sum": RetinaNet divides by the matched anchors itself)
        self.box_loss = keras.losses.Huber(reduction="sum")
        self.classification_loss = keras.losses.BinaryFocalCrossentropy(from_logits=True, reduction="sum")

    def loss_and_outputs(self, images, targets=None, training=False):
        """``(loss, detections)`` of a prepared batch ``images`` (N, S, S, 3) and its ``targets`` (N, K, 5)
        ``[x1, y1, x2, y2, label]`` padded with label -1. ``loss``: float32 scalar (None without targets);
        ``detections``: None when ``training``, else float32 (N, MAX_DETECTIONS, 6) ``[x1, y1, x2, y2,
        score, label]`` in input pixels after non-maximum suppression, padded with label -1 and score 0."""
        out = self(images, training=training)
        box_pred = ops.cast(out["bbox_regression"], "float32")
        cls_pred = ops.cast(out["cls_logits"], "float32")
        loss = None if targets is None else self._loss(images, ops.cast(targets, "float32"), box_pred, cls_pred)
        return loss, (None if training else self._detections(images, box_pred, cls_pred))

    def _loss(self, images, targets, box_pred, cls_pred):
        """keras-hub's RetinaNetObjectDetector.compute_loss (see the module docstring for the one change)."""
        boxes, labels = self.label_encoder(images=images, gt_boxes=targets[..., :4], gt_classes=targets[..., 4])
        cls_labels = ops.one_hot(ops.cast(labels, "int32"), self.num_classes, dtype="float32")
        positive = ops.cast(ops.greater(labels, -1.0), "float32")
        normalizer = ops.maximum(ops.sum(positive), 1.0)
        cls_weights = ops.cast(ops.not_equal(labels, -2.0), "float32") / normalizer
        box_weights = positive / normalizer
        return (self.classification_loss(cls_labels, cls_pred, sample_weight=cls_weights)
                + self.box_loss(ops.cast(boxes, "float32"), box_pred, sample_weight=box_weights))

    def _detections(self, images, box_pred, cls_pred):
        """keras-hub's RetinaNetObjectDetector.decode_predictions, then one (N, MAX_DETECTIONS, 6) array."""
        size = self.image_size
        anchors = ops.concatenate(list(self.anchor_generator(images).values()), axis=0)
        boxes = keras.utils.bounding_boxes.decode_deltas_to_boxes(
            anchors=anchors, boxes_delta=box_pred, encoded_format="center_xywh", anchor_format="xyxy",
            box_format="xyxy", image_shape=(size, size, 3))
        boxes = ops.clip(boxes, 0.0, float(size))   # as torchvision clips them to the image
        # and, as torchvision's remove_small_boxes does, drops boxes under 0.01 px a side (a box wholly off the
        # image is flat once clipped): their class logits go to -1e9, below any confidence threshold
        small = ops.logical_or(boxes[..., 2] - boxes[..., 0] < 1e-2, boxes[..., 3] - boxes[..., 1] < 1e-2)
        cls_pred = ops.where(small[..., None], -1e9, cls_pred)

        def suppress(one):   # keras-hub's NonMaxSuppression needs a static batch size: one image at a time
            found = self.prediction_decoder(one[0][None], one[1][None])
            labels = ops.cast(found["labels"][0], "float32")
            valid = ops.greater_equal(labels, 0.0)
            scores = ops.where(valid, ops.cast(found["confidence"][0], "float32"), 0.0)
            kept = ops.where(valid[:, None], ops.cast(found["boxes"][0], "float32"), 0.0)
            return ops.concatenate([kept, scores[:, None], ops.where(valid, labels, -1.0)[:, None]], axis=-1)

        return tf.map_fn(suppress, (boxes, cls_pred),
                         fn_output_signature=tf.TensorSpec((MAX_DETECTIONS, 6), tf.float32))


def build(num_classes, pretrained, image_size):
    """The detector's parts for an FTModel (see ``models.build``)."""
    from . import models
    body, body_groups, source = models._mobilenet_encoder(pretrained, image_size)
    encoder = keras.Model(body.inputs, {level: body.get_layer(name).output for level, name in TAPS.items()},
                          name="backbone")
    native = RetinaNet(encoder, num_classes, image_size, name="retinanet")
    groups = body_groups + [("neck", [native.pyramid]),
                            ("head", [native.class_head, native.box_head])]
    return {"native": native, "body": None, "head": None, "groups": groups,
            "input_spec": models._image_spec(image_size), "source": source, "original_head": None,
            "new": [native.pyramid, native.class_head, native.box_head]}
