"""Sequence-to-sequence translation (ftkit.tasks.seq2seq): the encoder-decoder warm-started from MiniLM, its
groups, a fixed batch learned by the one training loop, greedy and beam decoding, saved runs and bad input."""
import numpy as np
import pytest

import ftkit
from ftkit import ConfigError, DataError
from ftkit.tasks.seq2seq import round_trip, tokenizer

from _helpers import greedy_by_hand

# 8 pairs from the offline phrases (ftkit.translation_data), a batch the model learns by heart
SOURCES = ["twenty-one", "three hundred and five", "Monday, May 4, 1998", "7:15 PM", "ninety-nine",
           "Friday, June 12, 2020", "6:05 AM", "one thousand and eight"]
TARGETS = ["vingt et un", "trois cent cinq", "lundi 4 mai 1998", "19 h 15", "quatre-vingt-dix-neuf",
           "vendredi 12 juin 2020", "6 h 05", "mille huit"]
FRAMEWORKS = ["torch", "tf"]
pytestmark = pytest.mark.xdist_group("seq2seq")   # one worker: the learned model of each framework is made once


def texts(x, y, name="pairs"):
    split = ftkit.Split(x, y)
    return ftkit.Dataset(name, {"train": split, "val": split, "test": split}, task="seq2seq", modality="text")


def pairs(n=8):
    return texts(SOURCES[:n], TARGETS[:n])


@pytest.fixture(scope="module", params=FRAMEWORKS)
def learned(request):
    """A warm-started model after 40 steps on one fixed batch (full fine-tuning, AdamW 3e-4)."""
    model = ftkit.load_model("minilm", framework=request.param, task="seq2seq", max_length=16, verbose=False)
    batch = ftkit.Split(SOURCES, TARGETS)
    data = ftkit.Dataset("pairs", {"train": ftkit.Split(SOURCES * 40, TARGETS * 40), "val": batch, "test": batch},
                         task="seq2seq", modality="text")   # one epoch: 40 steps of the same 8 pairs
    run = ftkit.finetune(model, data, ftkit.FineTuneConfig(epochs=1, batch_size=8, lr=3e-4, progress=False))
    return model, run


# ------------------------------------------------------------------------------------ the warm start

def _minilm_layers_torch(model):
    """(checkpoint name, array) of MiniLM's weights, and the same names in the model's encoder and decoder."""
    from transformers import AutoModel
    minilm = {k: v.numpy() for k, v in AutoModel.from_pretrained(ftkit.models.minilm_path()).state_dict().items()
              if not k.startswith("pooler")}
    net = model.native.model
    enc, dec = net.encoder.state_dict(), net.decoder.state_dict()
    return [(k, v, enc[k].numpy(), dec[f"bert.{k}"].numpy()) for k, v in minilm.items()]


def _minilm_layers_tf(model):
    """The same for keras-hub: MiniLM's BertBackbone (its weights loaded by keras-hub), its embeddings and each
    layer's self-attention and feed-forward sub-layers, against the model's encoder and decoder."""
    from ftkit.backends.tf.models import _bert_backbone
    from ftkit.backends.tf.seq2seq import COPIED
    ref, _ = _bert_backbone("minilm", True)
    net = model.native
    out = []
    pairs = [(ref.token_embedding, net.encoder_embeddings[0], net.token_embedding),
             (ref.position_embedding, net.encoder_embeddings[1], net.position_embedding),
             (ref.segment_embedding, net.encoder_embeddings[2], net.segment_embedding),
             (ref.embeddings_layer_norm, net.encoder_embeddings[3], net.embeddings_norm)]
    for i, layer in enumerate(ref.transformer_layers):
        for name in COPIED:
            pairs.append((getattr(layer, name), getattr(net.encoder_layers[i], name),
                          getattr(net.decoder_layers[i], name)))
    for r, e, d in pairs:
        for w, we, wd in zip(r.weights, e.weights, d.weights):
            out.append((w.path, w.numpy(), we.numpy(), wd.numpy()))
    return out


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_decoder_starts_from_minilm_and_only_cross_attention_and_the_output_transform_are_new(framework):
    model = ftkit.load_model("minilm", framework=framework, task="seq2seq", verbose=False)
    copied = {"torch": _minilm_layers_torch, "tf": _minilm_layers_tf}[framework](model)
    for name, want, enc, dec in copied:
        assert np.array_equal(enc, want), f"encoder {name} differs from MiniLM's"
        assert np.array_equal(dec, want), f"decoder {name} differs from MiniLM's"
    # embeddings (4 tensors and the norm's 2), then 6 layers of 4 attention kernels and biases, a norm's 2,
    # two dense layers' 4 and a norm's 2
    assert len(copied) == 5 + 6 * (8 + 2 + 4 + 2)
    # cross-attention is new (random, not a copy of the self-attention beside it); the logits are tied to
    # the decoder's token embedding
    if framework == "torch":
        dec = model.native.model.decoder
        layer = dec.bert.encoder.layer[0]
        q, cq = layer.attention.self.query.weight, layer.crossattention.self.query.weight
        tied = dec.cls.predictions.decoder.weight is dec.bert.embeddings.word_embeddings.weight
    else:
        layer = model.native.decoder_layers[0]
        q, cq = layer._self_attention_layer._query_dense.kernel, layer._cross_attention_layer._query_dense.kernel
        tied = model.native.token_embedding.tie_weights and len(model.native.output_layer.weights) == 5
    assert not np.allclose(np.asarray(q.detach() if framework == "torch" else q), np.asarray(
        cq.detach() if framework == "torch" else cq))
    assert tied
    assert model.new_groups == 2 and model.group_names[-2:] == ["cross_attention", "output"]


def _weights(member, framework):
    return list(member.parameters()) if framework == "torch" else list(member.weights)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_weight_is_in_exactly_one_group(framework):
    model = ftkit.load_model("minilm", framework=framework, task="seq2seq", verbose=False)
    owner = {}
    for g in model.groups:
        for m in g.members:
            for p in _weights(m, framework):
                assert id(p) not in owner or owner[id(p)] == g.name, \
                    f"a weight of {g.name} is also in {owner[id(p)]}"
                owner[id(p)] = g.name
    every = {id(p): int(np.prod(p.shape)) for p in _weights(model.native, framework)}
    assert set(owner) == set(every), "some weights are in no group"
    assert sum(model.param_counts()) == sum(every.values()) == 48_862_650   # the same model in both frameworks


# ------------------------------------------------------------------------------------ learning and decoding

def test_a_fixed_batch_is_learned_and_greedy_decoding_writes_the_targets(learned):
    model, run = learned
    losses = [s["loss"] for s in run.history["steps"]]
    assert losses[-1] < 0.1 * losses[0], f"loss {losses[0]:.2f} -> {losses[-1]:.2f}"
    out = ftkit.generate(model, SOURCES)
    want = round_trip(tokenizer(model), TARGETS)
    assert sum(o == w for o, w in zip(out, want)) >= 7, list(zip(out, want))
    scores = ftkit.evaluate(model, pairs(), "test")
    assert scores["bleu"] > 80 and scores["exact_match"] >= 7 / 8


def _last_logits(model, ids, prefix):
    """The decoder's logits for the token after ``prefix``, computed from scratch (no cache)."""
    if model.framework == "torch":
        import torch
        net = model.native.model.eval()
        with torch.no_grad():
            ids = torch.as_tensor(ids)
            return net(input_ids=ids, attention_mask=torch.ones_like(ids),
                       decoder_input_ids=torch.tensor([prefix])).logits[0, -1].numpy()
    import keras
    net = model.native
    x = {"token_ids": keras.ops.convert_to_tensor(ids, "int32"),
         "padding_mask": keras.ops.ones(ids.shape, "int32")}
    prefix = keras.ops.convert_to_tensor([prefix], "int32")
    return np.asarray(net.decode(prefix, *net.encode(x)))[0, -1]


def test_beam_search_with_one_beam_is_greedy_and_greedy_is_the_argmax_at_every_step(learned):
    model, _ = learned
    greedy = ftkit.generate(model, SOURCES, num_beams=1)
    assert ftkit.predict(model, SOURCES) == greedy
    # the reference: recompute the whole prefix at every step (no cache), take the argmax
    tok = tokenizer(model)
    written = greedy_by_hand(model, lambda text, prefix: _last_logits(model, np.asarray([tok.encode(text).ids]),
                                                                      prefix), SOURCES, 16)
    assert greedy == written
    beams = ftkit.generate(model, SOURCES, num_beams=4)
    assert all(isinstance(b, str) for b in beams) and sum(b == g for b, g in zip(beams, greedy)) >= 6
    short = ftkit.generate(model, SOURCES, max_length=2)
    assert all(len(tok.encode(s).ids) - 2 <= 2 for s in short)


def test_a_saved_run_loads_back_and_decodes_identically(learned, tmp_path):
    model, run = learned
    run.save(tmp_path / "run")
    back = ftkit.load_run(str(tmp_path / "run"))
    assert back.model.task == "seq2seq" and back.model.group_names == model.group_names
    for beams in (1, 3):
        assert ftkit.generate(back.model, SOURCES, num_beams=beams) == ftkit.generate(model, SOURCES, num_beams=beams)


# ------------------------------------------------------------------------------------ bad input

def test_bad_texts_are_refused_with_the_example_named():
    def data(x, y):
        return ftkit.Dataset("bad", {"train": ftkit.Split(x, y), "val": ftkit.Split(x, y),
                                     "test": ftkit.Split(x, y)}, task="seq2seq", modality="text")
    with pytest.raises(DataError, match="example 1: the source is empty"):
        data(["one", "  "], ["un", "deux"])
    with pytest.raises(DataError, match="example 0: the target is a int"):
        data(["one"], [1])
    with pytest.raises(DataError, match="1 sources but 2 targets"):
        data(["one"], ["un", "deux"])


def test_what_the_model_cannot_read_or_write_is_refused_before_training():
    model = ftkit.load_model("minilm", task="seq2seq", max_length=8, verbose=False)
    config = ftkit.FineTuneConfig(epochs=1, progress=False)
    with pytest.raises(DataError, match="source has 11 tokens, more than the model's max_length=8"):
        ftkit.finetune(model, texts(["one two three four five six seven eight nine"], ["un"]), config)
    with pytest.raises(DataError, match=r"the target has \d+ tokens with its end token, more than the model writes \(max_length=8\)"):
        ftkit.finetune(model, texts(["one"], ["un deux trois quatre cinq six sept huit"]), config)
    with pytest.raises(DataError, match="has '🙂', which the model's vocabulary cannot write"):
        ftkit.finetune(model, texts(["smile"], ["sourire 🙂"]), config)
    with pytest.raises(DataError, match="source has 11 tokens"):
        ftkit.generate(model, ["one two three four five six seven eight nine"])
    with pytest.raises(DataError, match="the source is empty"):
        ftkit.generate(model, [""])


def test_bad_settings_are_refused():
    model = ftkit.load_model("minilm", task="seq2seq", max_length=8, verbose=False)
    with pytest.raises(ConfigError, match="num_beams=0 must be a whole number >= 1"):
        ftkit.generate(model, ["one"], num_beams=0)
    with pytest.raises(ConfigError, match="max_length=0 must be a whole number >= 1"):
        ftkit.generate(model, ["one"], max_length=0)
    with pytest.raises(ConfigError, match="max_length=600 is more than"):
        ftkit.generate(model, ["one"], max_length=600)
    assert model.native.decoding == {"num_beams": 1, "max_length": 8}, "a refused setting must change nothing"
    for field, value in (("label_smoothing", 0.1), ("peft", "lora"), ("grad_checkpointing", True)):
        with pytest.raises(ConfigError, match=f"{field}=.*task 'seq2seq'"):
            ftkit.finetune(model, pairs(2), ftkit.FineTuneConfig(epochs=1, progress=False, **{field: value}))
    with pytest.raises(ConfigError, match="a seq2seq model writes text, it has no classes"):
        ftkit.load_model("minilm", task="seq2seq", num_classes=3)
    with pytest.raises(ConfigError, match="task='seq2seq' warm-starts an encoder-decoder from a text model"):
        ftkit.load_model("mobilenet_v2", task="seq2seq")
    classifier = ftkit.load_model("minilm", num_classes=2, verbose=False)
    with pytest.raises(ConfigError, match="decoding settings apply to models that write text"):
        ftkit.generate(classifier, ["one"])
