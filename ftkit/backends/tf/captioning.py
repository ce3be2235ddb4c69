"""TensorFlow (Keras 3) image captioning: the pre-trained MobileNetV2 as the encoder and a text decoder
warm-started from one BERT-style checkpoint (design: ftkit.tasks.captioning). The mirror of
``ftkit/backends/torch/captioning.py``.

The encoder is ftkit's Keras MobileNetV2 with torchvision's weights (``models._torchvision_layout_mobilenet``)
up to its last feature map, (N, h, w, 1280) with h = w = image size / 32, read as h*w image tokens, each
projected to the decoder's width with a learned position added and a LayerNorm (:class:`ImageTokens`, new).
The decoder is seq2seq's (:class:`~ftkit.backends.tf.seq2seq.TextWriter`): keras-hub ``TransformerDecoder``
layers with MiniLM's self-attention and feed-forward weights, new cross-attention, tied output logits, and
keras-hub's samplers over a cache of keys and values.
"""
from ... import _frameworks
from .seq2seq import TextWriter, _initializer, decoder_groups

tf = _frameworks.tensorflow()
import keras  # noqa: E402
from keras import ops  # noqa: E402


class ImagePositions(keras.layers.Layer):
    """A learned vector per image cell, added to the cells' tokens (``kernel``: (cells, hidden), BERT's
    initialisation, so ftkit re-initialises it as it does any new layer's kernel)."""

    def __init__(self, cells, hidden, **kwargs):
        super().__init__(**kwargs)
        self.cells, self.hidden = cells, hidden
        self.kernel_initializer = _initializer()

    def build(self, input_shape=None):
        self.kernel = self.add_weight(shape=(self.cells, self.hidden), initializer=self.kernel_initializer,
                                      name="kernel")

    def call(self, tokens):
        return tokens + ops.cast(self.kernel, tokens.dtype)[None]


class ImageTokens(keras.layers.Layer):
    """A feature map (N, h, w, C) as h*w tokens of width ``hidden``: projected, plus a learned position per
    cell, then LayerNorm."""

    def __init__(self, channels, hidden, cells, **kwargs):
        super().__init__(**kwargs)
        self.project = keras.layers.Dense(hidden, name="project")
        self.positions = ImagePositions(cells, hidden, name="positions")
        self.norm = keras.layers.LayerNormalization(epsilon=1e-12, name="norm")
        self.channels, self.hidden, self.cells = channels, hidden, cells

    def build(self, input_shape=None):
        self.project.build((None, None, self.channels))
        self.positions.build()
        self.norm.build((None, None, self.hidden))

    def call(self, features):
        tokens = ops.reshape(features, (ops.shape(features)[0], self.cells, self.channels))
        return self.norm(self.positions(self.project(tokens)))


class CaptionNet(TextWriter):
    """MobileNetV2 features, image tokens and a warm-started text decoder, as a :class:`TextWriter`: a batch of
    prepared images (N, H, W, 3) in."""

    def __init__(self, body, decoder_backbone, max_length, special, **kwargs):
        super().__init__(decoder_backbone, max_length, special, name="captioning", **kwargs)
        self.features = keras.Model(body.input, body.get_layer("out_relu").output, name="image_features")
        _, h, w, channels = self.features.output.shape
        self.image_tokens = ImageTokens(channels, self.hidden, h * w, name="image_tokens")
        self.image_tokens.build()
        self(ops.zeros((1, *body.input.shape[1:])))   # builds every weight

    def encode(self, images, training=False):
        memory = self.image_tokens(self.features(images, training=training))
        return memory, ops.ones(ops.shape(memory)[:2], "int32")


def build(pretrained, max_length, image_size, backbone, special, mobilenet):
    """The captioning network: ``(net, groups, new, spec)``, with the torch backend's groups (the image tokens
    in cross_attention). ``backbone(pretrained)`` gives a keras-hub BertBackbone of the checkpoint (exact
    GELU); ``mobilenet(pretrained, image_size)`` gives (the Keras MobileNetV2 body, its groups, source)."""
    body, image_groups, source = mobilenet(pretrained, image_size)
    net = CaptionNet(body, backbone(pretrained), max_length, special)
    decoder, new = decoder_groups(net)
    groups = image_groups + decoder
    groups[-2] = ("cross_attention", [net.image_tokens] + groups[-2][1])
    return net, groups, [net.image_tokens] + new, {"max_positions": int(net.position_embedding.sequence_length),
                                                   "source": source}
