"""TensorFlow (Keras 3) encoder-decoder warm-started from one BERT-style checkpoint (design:
ftkit.tasks.seq2seq). The mirror of ``ftkit/backends/torch/seq2seq.py``.

keras-hub supplies the parts. The encoder is the checkpoint's ``BertBackbone`` (up to its token vectors).
The decoder is a second copy of the checkpoint: its embeddings, and six keras-hub ``TransformerDecoder``
layers whose self-attention and feed-forward weights are copied from the checkpoint's layers (the two
layer types name and shape them alike) and whose cross-attention is new. The output layer is the
language-model head transformers gives BERT: a new transform (dense, GELU, LayerNorm), then logits from
the decoder's token embedding itself (keras-hub's ``ReversibleEmbedding`` with ``reverse=True``: tied
weights), plus a bias starting at 0.

Decoding runs keras-hub's samplers (``GreedySampler``; ``BeamSampler`` for beam search) over
:meth:`Seq2SeqNet.next_token_logits`, which reads one token and keeps every decoder layer's keys and
values in a cache (keras-hub's ``CachedMultiHeadAttention``), as keras-hub's own ``BartSeq2SeqLM`` does.
keras-hub's beam search scores a beam by its summed log-probability, with no length normalisation and no
early stop per beam (transformers' ``generate`` has both), so with more than one beam the two backends
may choose different texts; with one beam both are greedy.
"""
from ... import _frameworks
from ...tasks import IGNORE

tf = _frameworks.tensorflow()
import keras  # noqa: E402
from keras import ops  # noqa: E402


def _exact_gelu(x):
    return keras.activations.gelu(x, approximate=False)


def _initializer():
    return keras.initializers.TruncatedNormal(stddev=0.02)   # BERT's, as keras-hub's bert_kernel_initializer


class TiedOutput(keras.layers.Layer):
    """BERT's language-model head: a dense transform with GELU and LayerNorm, then logits against the token
    embedding (passed in at call time, so its weights stay the embedding's own) and a bias."""

    def __init__(self, hidden, vocabulary, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(hidden, activation=_exact_gelu, kernel_initializer=_initializer(),
                                        name="transform_dense")
        self.norm = keras.layers.LayerNormalization(epsilon=1e-12, name="transform_layer_norm")
        self.vocabulary, self.hidden = vocabulary, hidden

    def build(self, input_shape=None):
        self.dense.build((None, None, self.hidden))
        self.norm.build((None, None, self.hidden))
        self.bias = self.add_weight(shape=(self.vocabulary,), initializer="zeros", name="bias")

    def call(self, hidden, embedding):
        return embedding(self.norm(self.dense(hidden)), reverse=True) + ops.cast(self.bias, hidden.dtype)


class TextWriter(keras.Model):
    """A warm-started text decoder that reads an encoder's memory, called as ftkit calls a model with a
    ``"native"`` loss: :meth:`loss_and_outputs` takes a batch and its targets (N, T) (IGNORE after the end
    token). A subclass builds its encoder and says how it reads a batch (:meth:`encode`: the memory (N, S,
    hidden) and its mask (N, S)), then calls ``self(example)`` to build every weight. ``decoding`` holds
    ``num_beams`` and ``max_length`` (ftkit.generate sets them).

    The decoder is a second copy of the checkpoint (``decoder_backbone``, a keras-hub BertBackbone): its
    embeddings, and keras-hub ``TransformerDecoder`` layers whose self-attention and feed-forward weights are
    copied from its layers (cross-attention new), and :class:`TiedOutput`."""

    def __init__(self, decoder_backbone, max_length, special, **kwargs):
        super().__init__(**kwargs)
        dec = decoder_backbone
        self.token_embedding = dec.token_embedding          # also the output layer's weights
        self.position_embedding, self.segment_embedding = dec.position_embedding, dec.segment_embedding
        self.embeddings_norm, self.embeddings_dropout = dec.embeddings_layer_norm, dec.embeddings_dropout
        hidden, heads = dec.hidden_dim, dec.num_heads
        from keras_hub.layers import TransformerDecoder
        self.decoder_layers = [TransformerDecoder(dec.intermediate_dim, heads, dropout=0.1, activation=_exact_gelu,
                                                  layer_norm_epsilon=1e-12, kernel_initializer=_initializer(),
                                                  name=f"decoder_layer_{i}") for i in range(dec.num_layers)]
        for layer, source in zip(self.decoder_layers, dec.transformer_layers):
            layer.build((None, None, hidden), (None, None, hidden))
            for name in COPIED:   # the same sub-layers in keras-hub's encoder and decoder layers
                getattr(layer, name).set_weights(getattr(source, name).get_weights())
        self.output_layer = TiedOutput(hidden, dec.vocabulary_size, name="output_transform")
        self.output_layer.build()
        self.decoding = {"num_beams": 1, "max_length": max_length}
        self.special = dict(special)   # [CLS] (the decoder's start token), [SEP] (its end token), [PAD]
        self.hidden, self.heads = hidden, heads

    def encode(self, x, training=False):
        """``(memory, mask)``: what the decoder's cross-attention reads, and which of it is real."""
        raise NotImplementedError

    # -- the decoder ---------------------------------------------------------------------------------------
    def _embed(self, tokens, start=0, training=False):
        vectors = self.token_embedding(tokens)
        vectors = vectors + self.position_embedding(vectors, start_index=start) + \
            self.segment_embedding(ops.zeros_like(tokens))
        return self.embeddings_dropout(self.embeddings_norm(vectors), training=training)

    def decode(self, read, memory, memory_mask, training=False):
        """Logits (N, T, vocabulary) for every position of ``read`` (teacher forcing; causal)."""
        h = self._embed(read, training=training)
        pad = ops.not_equal(read, self.special["[PAD]"])
        for layer in self.decoder_layers:
            h = layer(h, memory, decoder_padding_mask=pad, encoder_padding_mask=memory_mask, training=training)
        return self.output_layer(h, embedding=self.token_embedding)

    def call(self, x, training=False):
        """Logits for two start tokens (what builds the model; training goes through loss_and_outputs)."""
        memory, mask = self.encode(x, training)
        start = ops.full((ops.shape(memory)[0], 2), self.special["[CLS]"], "int32")
        return self.decode(start, memory, mask, training)

    # -- ftkit's native-loss contract ---------------------------------------------------------------------
    def loss_and_outputs(self, x, targets, training=False):
        """Mean token cross-entropy with teacher forcing (NaN without targets) and, in inference mode, the
        generated token ids (N, max_length) as float32 (the end token, then anything)."""
        targets = ops.cast(targets, "int32")
        memory, mask = self.encode(x, training)
        if targets.shape[1] == 1:   # inputs without targets (a target has at least a token and the end token)
            return ops.full((), float("nan"), "float32"), None if training else self.generate(memory, mask)
        n = ops.shape(targets)[0]
        start = ops.full((n, 1), self.special["[CLS]"], "int32")
        read = ops.concatenate([start, targets[:, :-1]], axis=1)
        read = ops.where(ops.equal(read, IGNORE), self.special["[PAD]"], read)
        logits = ops.cast(self.decode(read, memory, mask, training), "float32")
        valid = ops.not_equal(targets, IGNORE)
        per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(ops.where(valid, targets, 0), logits)
        weights = ops.cast(valid, "float32")
        loss = ops.sum(per_token * weights) / ops.sum(weights)
        if training:
            return loss, None
        return loss, self.generate(memory, mask)

    # -- decoding ----------------------------------------------------------------------------------------
    def next_token_logits(self, token, index, cache, memory, memory_mask, cross, seed_cross=False):
        """Logits (N, vocabulary) after reading ``token`` (N, 1) at position ``index``, and the updated
        caches: each layer's self-attention keys and values are written at ``index``; the cross-attention
        ones are computed once from the encoder (``seed_cross``) and then only read."""
        h = self._embed(token, start=index)
        selfs, crosses = [], []
        for i, layer in enumerate(self.decoder_layers):
            h, s, c = layer(h, memory, encoder_padding_mask=memory_mask, self_attention_cache=cache[:, i],
                            self_attention_cache_update_index=index, cross_attention_cache=cross[:, i],
                            cross_attention_cache_update_index=0 if seed_cross else None)
            selfs.append(s)
            crosses.append(c)
        logits = self.output_layer(h, embedding=self.token_embedding)[:, 0]
        return ops.cast(logits, "float32"), ops.stack(selfs, 1), ops.stack(crosses, 1) if seed_cross else cross

    def generate(self, memory, mask):
        """Token ids (N, max_length) after the start token, given the encoder's ``memory`` and its ``mask``:
        greedy, or beam search with ``num_beams``."""
        from keras_hub.samplers import BeamSampler, GreedySampler
        beams, length = self.decoding["num_beams"], self.decoding["max_length"]
        n, s = ops.shape(memory)[0], ops.shape(memory)[1]
        head_dim = self.hidden // self.heads
        layers = len(self.decoder_layers)
        cache = ops.zeros((n, layers, 2, length + 1, self.heads, head_dim), memory.dtype)
        cross = ops.zeros((n, layers, 2, s, self.heads, head_dim), memory.dtype)
        prompt = ops.concatenate([ops.full((n, 1), self.special["[CLS]"], "int32"),
                                  ops.full((n, length), self.special["[PAD]"], "int32")], axis=1)
        _, cache, cross = self.next_token_logits(prompt[:, :1], 0, cache, memory, mask, cross, seed_cross=True)

        def next(prompt, state, index):
            cache, memory, mask, cross = state
            logits, cache, _ = self.next_token_logits(prompt[:, index - 1:index], index - 1, cache, memory, mask,
                                                      cross)
            return logits, None, (cache, memory, mask, cross)

        sampler = GreedySampler() if beams == 1 else BeamSampler(num_beams=beams)
        given = ops.concatenate([ops.ones((n, 1), "bool"), ops.zeros((n, length), "bool")], axis=1)
        out = sampler(next, prompt, cache=(cache, memory, mask, cross), index=1, mask=given,
                      stop_token_ids=[self.special["[SEP]"]])
        return ops.cast(out[:, 1:], "float32")


class Seq2SeqNet(TextWriter):
    """The encoder-decoder as a :class:`TextWriter`: a batch ``{"token_ids", "padding_mask"}``; the encoder is
    the checkpoint's ``BertBackbone`` up to its token vectors."""

    def __init__(self, encoder_backbone, decoder_backbone, max_length, special, **kwargs):
        super().__init__(decoder_backbone, max_length, special, name="seq2seq", **kwargs)
        enc = encoder_backbone
        self.encoder = keras.Model(enc.input, enc.output["sequence_output"], name="encoder")
        self.encoder_layers = list(enc.transformer_layers)
        self.encoder_embeddings = [enc.token_embedding, enc.position_embedding, enc.segment_embedding,
                                   enc.embeddings_layer_norm]
        self({"token_ids": ops.ones((1, 2), "int32"), "padding_mask": ops.ones((1, 2), "int32")})   # builds all

    def encode(self, x, training=False):
        memory = self.encoder({"token_ids": x["token_ids"], "segment_ids": ops.zeros_like(x["token_ids"]),
                               "padding_mask": x["padding_mask"]}, training=training)
        return memory, x["padding_mask"]


COPIED = ("_self_attention_layer", "_self_attention_layer_norm", "_feedforward_intermediate_dense",
          "_feedforward_output_dense", "_feedforward_layer_norm")


def build(path, pretrained, max_length, backbone, special):
    """The warm-started (``pretrained=False``: the same architecture, randomly initialised) encoder-decoder:
    ``(net, groups, new, spec)``, with the torch backend's groups. ``backbone(pretrained)`` gives a keras-hub
    BertBackbone of the checkpoint (exact GELU)."""
    net = Seq2SeqNet(backbone(pretrained), backbone(pretrained), max_length, special)
    n = len(net.encoder_layers)
    decoder, new = decoder_groups(net)
    groups = [("encoder_embeddings", net.encoder_embeddings),
              (f"encoder_layers_0_{n // 2 - 1}", net.encoder_layers[:n // 2]),
              (f"encoder_layers_{n // 2}_{n - 1}", net.encoder_layers[n // 2:])] + decoder
    return net, groups, new, {"max_positions": int(net.position_embedding.sequence_length)}


def decoder_groups(net):
    """The groups of a :class:`TextWriter`'s decoder, input to output (decoder_embeddings, decoder_layers,
    cross_attention, output: the torch backend's), and its layers that start random."""
    cross = [getattr(layer, name) for layer in net.decoder_layers
             for name in ("_cross_attention_layer", "_cross_attention_layer_norm", "_cross_attention_dropout")]
    own = [getattr(layer, name) for layer in net.decoder_layers
           for name in (*COPIED, "_self_attention_dropout", "_feedforward_dropout")]
    groups = [("decoder_embeddings", [net.position_embedding, net.segment_embedding, net.embeddings_norm]),
              ("decoder_layers", own),
              ("cross_attention", cross),
              ("output", [net.output_layer, net.token_embedding])]
    return groups, [m for m in cross if m.weights] + [net.output_layer]
