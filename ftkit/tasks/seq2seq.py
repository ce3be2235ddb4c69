"""Sequence-to-sequence generation (translation) on the task seam.

An example is a source text and its target text (a split's ``x`` and ``y``: lists of strings). The model
is an encoder-decoder *warm-started* from one pre-trained BERT-style checkpoint (Rothe, Narayan and Severyn
2020): the encoder is the checkpoint, the decoder is the checkpoint too, with a causal mask and a new
cross-attention in each layer (the only weights that start random, with the output layer's transform);
its output logits are tied to its token embedding.

* **Rows.** ``encode`` tokenizes the sources (``input_ids``, ``attention_mask``, padded to a multiple of 8
  tokens at least the split's longest) and the targets: the target's tokens then ``[SEP]`` as the end
  token, padded with ``IGNORE`` to ``max_length``. (Few shapes: TensorFlow traces a step once per shape.)
  The decoder starts from ``[CLS]`` and is trained with teacher forcing: at each position it reads the
  true target so far and predicts the next token.
* **Loss.** ``"native"``: the model computes the mean token cross-entropy itself, and in inference mode
  also decodes (greedy by default; beam search and the maximum length are the model's ``decoding``
  settings, see :func:`ftkit.generate`), so a run's validation gives BLEU every epoch.
* **Outputs**: the decoded texts. **Metrics**: sacrebleu's corpus BLEU and chrF and the exact-match rate
  (ftkit.metrics.generation_metrics), comparing texts in the tokenizer's *round-trip form*
  (``decode(encode(text))``: an uncased vocabulary lower-cases and strips accents, and WordPiece spaces
  punctuation, "dix-neuf" -> "dix - neuf"), the same for outputs and references, so only what the model
  can write is scored.

Bad input is refused before training: an empty source or target, a source longer than the model's
``max_length`` tokens (refused, not truncated: a cut source has another translation), a target longer
than the decoder may write, and a target with characters the vocabulary does not have (they would become
``[UNK]``).
"""
import contextlib

import numpy as np

from ..errors import ConfigError, DataError, whole_number
from . import GENERATES, IGNORE, Encoded, Task


class SequenceToSequence(Task):
    """Text in, text out: an encoder-decoder trained with teacher forcing, scored by BLEU and chrF."""
    name = "seq2seq"
    loss = "native"
    monitors = ("val_bleu", "val_chrf", "val_exact_match")
    checks_examples = True     # inputs and targets are texts: the task checks both (Dataset.validate)

    def check_split(self, dataset, which, split, num_classes):
        check_texts(split.x, split.y if has_targets(split.y) else None, f"dataset {dataset!r}: {which}")

    def check(self, model, data):
        if model.task != self.name:
            raise ConfigError(f"model {model.name!r} is for task {model.task!r}; load one with task={self.name!r}")
        for which, s in data.splits.items():
            where = f"dataset {data.name!r}: {which}"
            self.check_inputs(model, s.x, where)
            if has_targets(s.y):
                check_targets(model, s.y, where)

    def check_inputs(self, model, x, where):
        """Refuse sources longer than the model's ``max_length`` tokens."""
        check_sources(model, x, where)

    def check_config(self, config):
        self.refuse(config, {"label_smoothing": "computes its own loss (plain token cross-entropy)",
                             "grad_checkpointing": "is not built for encoder-decoders yet",
                             "peft": "is not built for encoder-decoders yet (its new cross-attention must train "
                                     "in full)"})

    def encode(self, model, split):
        tok = tokenizer(model)
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        x = [[cls] + t + [sep] for t in tokens(tok, split.x)]
        width = min(-(-max(len(t) for t in x) // 8) * 8, model.input_spec["max_length"])   # a multiple of 8
        inputs = {"input_ids": _padded(x, 0, width), "attention_mask": _padded([[1] * len(t) for t in x], 0, width)}
        return Encoded(inputs, target_rows(model, tok, split.y), tok)

    def outputs(self, logits, encoded, split):
        """The generated token ids (N, length; after the end token, padding) as texts."""
        tok, ids = encoded.meta, np.asarray(logits).astype(np.int64)
        sep = tok.token_to_id("[SEP]")
        ends = [list(row).index(sep) if sep in row else len(row) for row in ids]
        return tok.decode_batch([row[:end].tolist() for row, end in zip(ids, ends)], skip_special_tokens=True)

    def metrics(self, split, outputs, encoded=None):
        from ..metrics import generation_metrics
        return generation_metrics(outputs, round_trip(encoded.meta, split.y))


def has_targets(y):
    """False for the targets of examples to predict on (None, or all None)."""
    return y is not None and not all(t is None for t in y)


def target_rows(model, tok, y):
    """Targets as token rows (N, max_length): each text's tokens, then [SEP] (the end token), then IGNORE;
    without targets (:func:`has_targets`) one IGNORE column. Every split has the same width, so a traced
    (TensorFlow) step serves them all; PyTorch drops the columns that are IGNORE in a whole batch."""
    if not has_targets(y):
        return np.full((len(y), 1), IGNORE, np.int64)
    sep = tok.token_to_id("[SEP]")
    return _padded([t + [sep] for t in tokens(tok, y)], IGNORE, model.input_spec["max_length"])


def _padded(rows, value, width):
    """``rows`` of token ids as one array (N, ``width``), each row filled up with ``value``."""
    out = np.full((len(rows), width), value, np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def tokenizer(model):
    """The model's fast tokenizer (``tokenizers``), without truncation or padding."""
    from ..text import _tokenizer
    return _tokenizer(model.input_spec["tokenizer"], None)


def tokens(tok, texts):
    """Each text's token ids, without [CLS] and [SEP]."""
    return [e.ids[1:-1] for e in tok.encode_batch(list(texts))]


def check_texts(x, y, where="examples"):
    """Refuse sources and targets that are not non-empty strings (``y`` None: sources to translate)."""
    strings(x, "source", where)
    if y is not None:
        strings(y, "target", where)
        if len(y) != len(x):
            raise DataError(f"{where} has {len(x)} sources but {len(y)} targets; give one target per source")


def strings(texts, what, where):
    """Refuse ``texts`` (the ``what``s of split ``where``) unless they are a list of non-empty strings."""
    if not isinstance(texts, (list, tuple)):
        raise DataError(f"{where}: the {what}s are a {type(texts).__name__}; give a list of strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"{where} example {i}: the {what} is a {type(t).__name__} ({str(t)[:40]!r}); "
                            "give a string")
        if not t.strip():
            raise DataError(f"{where} example {i}: the {what} is empty")


def check_sources(model, x, where):
    """Refuse a source longer than the model's ``max_length`` tokens."""
    tok, limit = tokenizer(model), model.input_spec["max_length"]
    for i, ids in enumerate(tokens(tok, x)):
        if len(ids) + 2 > limit:
            raise DataError(f"{where} example {i}: the source has {len(ids) + 2} tokens, more than the model's "
                            f"max_length={limit}; shorten it, or load the model with a larger max_length (at most "
                            f"{model.input_spec['max_positions']})")


def check_targets(model, y, where):
    """Refuse a target longer than the model may write, and one with characters its vocabulary lacks."""
    tok, limit = tokenizer(model), model.input_spec["max_length"]
    unk = tok.token_to_id("[UNK]")
    for i, (text, enc) in enumerate(zip(y, tok.encode_batch(list(y)))):
        if len(enc.ids) - 1 > limit:
            raise DataError(f"{where} example {i}: the target has {len(enc.ids) - 1} tokens with its end token, "
                            f"more than the model writes (max_length={limit})")
        if unk in enc.ids:
            start, end = enc.offsets[enc.ids.index(unk)]
            raise DataError(f"{where} example {i}: the target {text!r} has {text[start:end]!r}, which the "
                            f"model's vocabulary cannot write (it would become [UNK]); replace or remove it")


def round_trip(tok, texts):
    """``texts`` as the model can write them: encoded and decoded again (lower case and no accents for an
    uncased vocabulary; WordPiece's spacing of punctuation)."""
    return tok.decode_batch([e.ids for e in tok.encode_batch(list(texts))], skip_special_tokens=True)


@contextlib.contextmanager
def decoding_settings(model, num_beams=1, max_length=None):
    """Inside: ``model`` decodes with ``num_beams`` beams and at most ``max_length`` tokens (None: the
    model's ``max_length``), checked first. The network of either backend keeps them in its ``decoding``
    dict, which its inference mode reads."""
    if getattr(model, "task", None) not in GENERATES:
        raise ConfigError(f"decoding settings apply to models that write text (tasks {', '.join(GENERATES)}); "
                          f"this one is for task {getattr(model, 'task', None)!r}")
    whole_number("num_beams", num_beams, 1, " (1: greedy decoding; more: beam search)")
    limit = model.input_spec["max_positions"]
    max_length = whole_number("max_length", model.input_spec["max_length"] if max_length is None else max_length,
                              1, f" and at most {limit} (the tokens a text may have)")
    if max_length > limit:
        raise ConfigError(f"max_length={max_length} is more than the decoder has positions for ({limit})")
    old = dict(model.native.decoding)
    model.native.decoding.update({"num_beams": num_beams, "max_length": max_length})
    try:
        yield
    finally:
        model.native.decoding.clear()
        model.native.decoding.update(old)
