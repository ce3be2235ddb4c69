"""Extractive question answering (SQuAD v1.1 style) on the task seam.

An example is a question, a context and the answer: a span of the context, given as its text and the
character where it starts (``{"text": [...], "answer_start": [...]}``, SQuAD's format; several gold
answers are allowed, the first one is trained on). The model reads ``[CLS] question [SEP] context
[SEP]`` and gives two logits per token: how likely the answer starts there and how likely it ends
there (a *span head*). It is trained with the mean of the two cross-entropies.

* A context longer than the model takes is cut into overlapping **windows** (``stride`` tokens shared
  by neighbours), so no part of it is lost; each window is one row. A window that does not hold the
  whole answer is labelled with the ``[CLS]`` token (0, 0), as BERT did on SQuAD.
* The tokenizer's **offset mapping** gives each context token's characters, so a predicted token
  span maps back to a span of the original text.
* **Post-processing**: in every window, the ``n_best`` highest start and end logits among the
  context tokens are paired (end not before start, at most ``max_answer_length`` tokens); the best
  pair over all windows of an example, by start + end logit, is the answer.
* **Metrics**: exact match and F1 of the official SQuAD v1.1 script (lower case, punctuation and
  the articles a/an/the removed, whitespace collapsed; the best over the gold answers), as fractions.

One fast tokenizer (``tokenizers``, the model's ``tokenizer.json``) prepares the same NumPy arrays for
both frameworks.
"""
import collections
import re
import string
from functools import lru_cache

import numpy as np

from ..errors import ConfigError, DataError
from . import IGNORE, Encoded, Task  # noqa: F401  (IGNORE: documented in the seam)


class QuestionAnswering(Task):
    """Span extraction: start/end logits per token, windows over long contexts, SQuAD EM and F1."""
    name = "qa"
    loss = "cross_entropy"          # over the tokens: logits (N, 2, tokens), targets (N, 2) token positions
    monitors = ("val_exact_match", "val_f1")
    checks_examples = True          # questions and contexts are dicts: check_split checks them with the answers

    def check_split(self, dataset, which, split, num_classes):
        check_examples(split.x, _labels(split), f"dataset {dataset!r}: {which}")

    def check(self, model, data):
        if model.input_spec.get("max_length", 0) < 32:
            raise ConfigError(f"model {model.name!r}: max_length={model.input_spec.get('max_length')} is too "
                              "short for question answering (question and a window of context); use >= 32")

    def encode(self, model, split):
        spec = model.input_spec
        return windows(spec["tokenizer"], split.x, _labels(split), spec["max_length"], spec.get("stride", 64))

    def outputs(self, logits, encoded, split):
        logits = np.asarray(logits, dtype=np.float32)
        return best_answers(logits[:, 0], logits[:, 1], encoded.meta, [ex["context"] for ex in split.x])

    def metrics(self, split, outputs, encoded=None):
        return squad_scores(outputs, split.y)


def _labels(split):
    """The split's answers, or None for inputs without answers (``predict`` on raw questions)."""
    return None if all(a is None for a in split.y) else split.y


# -------------------------------------------------------------------------------- checking the examples

def _where(where, i):
    return f"{where} example {i}"


def check_examples(x, y, where="examples"):
    """Refuse QA examples that cannot be trained on, naming the example: ``x`` must be a list of
    ``{"question": str, "context": str}`` (non-empty strings); ``y`` (None for unlabelled inputs) one
    ``{"text": [str, ...], "answer_start": [int, ...]}`` per example, with at least one answer, each of
    which must be the context's text at ``answer_start`` (a question without an answer in its context
    is SQuAD 2.0, which this task does not learn)."""
    if not isinstance(x, (list, tuple)):
        raise DataError(f"{where} x is a {type(x).__name__}; QA inputs must be a list of "
                        "{'question': str, 'context': str} dicts")
    for i, ex in enumerate(x):
        if not isinstance(ex, dict) or not {"question", "context"} <= set(ex):
            raise DataError(f"{_where(where, i)} is {str(ex)[:60]!r}; give a dict with 'question' and 'context'")
        for key in ("question", "context"):
            v = ex[key]
            if not isinstance(v, str):
                raise DataError(f"{_where(where, i)}: {key} is a {type(v).__name__} ({str(v)[:40]!r}); it must be "
                                "a string")
            if not v.strip():
                raise DataError(f"{_where(where, i)}: the {key} is empty")
    if y is None:
        return
    if len(y) != len(x):
        raise DataError(f"{where} has {len(x)} examples but {len(y)} answers")
    for i, (ex, ans) in enumerate(zip(x, y)):
        if not isinstance(ans, dict) or "text" not in ans or "answer_start" not in ans:
            raise DataError(f"{_where(where, i)}: the answer is {str(ans)[:60]!r}; give "
                            "{'text': [str, ...], 'answer_start': [int, ...]} (SQuAD's format)")
        texts, starts = ans["text"], ans["answer_start"]
        if isinstance(texts, str) or isinstance(starts, (int, np.integer)):
            texts, starts = [texts], [starts]
        if len(texts) == 0:
            raise DataError(f"{_where(where, i)} has no answer; extractive QA (SQuAD v1.1) needs at least one "
                            "answer span in the context (unanswerable questions are SQuAD 2.0, not supported)")
        if len(texts) != len(starts):
            raise DataError(f"{_where(where, i)}: {len(texts)} answer texts but {len(starts)} answer_start values")
        for text, start in zip(texts, starts):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{_where(where, i)}: answer {text!r} must be a non-empty string")
            if not isinstance(start, (int, np.integer)) or isinstance(start, bool) or start < 0:
                raise DataError(f"{_where(where, i)}: answer_start={start!r} must be a whole number >= 0")
            found = ex["context"][start:start + len(text)]
            if found != text:
                raise DataError(f"{_where(where, i)}: the answer {text!r} is not the context's text at "
                                f"answer_start={start} (there the context reads {found!r}); answer_start must be "
                                "the character where the answer starts in the context")


def answers(y):
    """``y`` in the canonical form: a list of ``(texts, starts)`` (a single answer becomes a list of one)."""
    out = []
    for ans in y:
        texts, starts = ans["text"], ans["answer_start"]
        if isinstance(texts, str):
            texts, starts = [texts], [starts]
        out.append((list(texts), [int(s) for s in starts]))
    return out


# ---------------------------------------------------------------------------------------------- windows

@lru_cache(maxsize=4)
def _pair_tokenizer(path, max_length, stride):
    """A fast tokenizer of its own (ftkit.text's is set up for single texts): question + context pairs,
    only the context truncated, into windows of ``max_length`` tokens that share ``stride`` tokens."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path)
    tok.enable_truncation(max_length=max_length, stride=stride, strategy="only_second")
    tok.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    return tok


Meta = collections.namedtuple("Meta", "example offsets")
Meta.__doc__ = """Per row: ``example`` (the example it came from) and ``offsets`` (rows, tokens, 2): each
context token's characters in its context, (-1, -1) for question, special and padding tokens."""


def windows(tokenizer_path, x, y, max_length, stride=64):
    """Rows of token arrays for ``x`` (``input_ids``, ``token_type_ids``, ``attention_mask``, each
    (rows, max_length) int32), their targets (rows, 2): the tokens where the answer starts and ends, or
    (0, 0) where the window does not hold it, and :class:`Meta` to map tokens back to characters."""
    if not 0 <= stride < max_length // 2:
        raise ConfigError(f"stride={stride!r} must be a whole number in 0..{max_length // 2 - 1} (less than half "
                          f"of max_length={max_length})")
    tok = _pair_tokenizer(tokenizer_path, max_length, stride)
    gold = answers(y) if y is not None else None
    ids, types, mask, offsets, targets, example = [], [], [], [], [], []
    for i, ex in enumerate(x):
        try:
            enc = tok.encode(ex["question"], ex["context"])
            q_tokens = enc.sequence_ids.count(0)
        except Exception:   # the tokenizer cannot cut the context short enough: the question is too long
            q_tokens = max_length
        if q_tokens > max_length // 2:
            raise DataError(f"example {i}: the question takes {q_tokens} of the max_length={max_length} tokens, "
                            "more than half, leaving too little room for the context; shorten it or load the "
                            "model with a larger max_length")
        for w in [enc] + enc.overflowing:
            seq = w.sequence_ids
            off = np.asarray([o if s == 1 else (-1, -1) for o, s in zip(w.offsets, seq)], dtype=np.int64)
            ids.append(w.ids), types.append(w.type_ids), mask.append(w.attention_mask)
            offsets.append(off), example.append(i)
            targets.append(_span_tokens(off, gold[i]) if gold is not None else (0, 0))
    as32 = lambda rows: np.asarray(rows, dtype=np.int32)   # noqa: E731
    inputs = {"input_ids": as32(ids), "token_type_ids": as32(types), "attention_mask": as32(mask)}
    return Encoded(inputs, np.asarray(targets, dtype=np.int64),
                   Meta(np.asarray(example, dtype=np.int64), np.stack(offsets)))


def _span_tokens(off, gold):
    """(start token, end token) of the first gold answer in a window with token ``off``\\ sets, or (0, 0)
    when the window does not hold the whole answer."""
    text, start = gold[0][0], gold[1][0]
    end = start + len(text)                     # one past the answer's last character
    inside = np.flatnonzero(off[:, 0] >= 0)
    if not len(inside) or off[inside[0], 0] > start or off[inside[-1], 1] < end:
        return (0, 0)
    first = inside[off[inside, 1] > start][0]    # the token holding the answer's first character
    last = inside[off[inside, 0] < end][-1]      # the token holding its last character
    return (int(first), int(last))


# -------------------------------------------------------------------------------------- post-processing

def best_answers(start_logits, end_logits, meta, contexts, n_best=20, max_answer_length=30):
    """The answer text of each example: over all of its windows, the span with the highest start +
    end logit among the ``n_best`` starts and ends of each window, inside the context, ending at or
    after its start and at most ``max_answer_length`` tokens long ("" if a window has no context)."""
    best = [(-np.inf, "") for _ in contexts]
    for row, i in enumerate(meta.example):
        off, sl, el = meta.offsets[row], start_logits[row], end_logits[row]
        ctx = off[:, 0] >= 0
        if not ctx.any():
            continue
        sl = np.where(ctx, sl, -np.inf)
        el = np.where(ctx, el, -np.inf)
        starts = np.argsort(sl)[::-1][:n_best]
        ends = np.argsort(el)[::-1][:n_best]
        for s in starts:
            if not ctx[s]:
                continue
            for e in ends:
                if not ctx[e] or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(sl[s] + el[e])
                if score > best[i][0]:
                    best[i] = (score, contexts[i][off[s, 0]:off[e, 1]])
    return [text for _, text in best]


# --------------------------------------------------------------------------------------------- metrics

def normalize_answer(s):
    """SQuAD v1.1's normalisation: lower case, no punctuation, no articles (a/an/the), single spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction, gold):
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction, gold):
    """Token-overlap F1 of the normalised strings (SQuAD v1.1)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions, y):
    """``{"exact_match", "f1"}``: means over the examples of the best score over each one's gold answers
    (fractions in 0..1; the official script prints them times 100)."""
    if len(predictions) != len(y):
        raise DataError(f"{len(predictions)} predictions for {len(y)} examples")
    em = [max(exact_match(p, g) for g in texts) for p, (texts, _) in zip(predictions, answers(y))]
    f = [max(f1(p, g) for g in texts) for p, (texts, _) in zip(predictions, answers(y))]
    return {"exact_match": float(np.mean(em)), "f1": float(np.mean(f))}


# ------------------------------------------------------------------------------------------ to look at

def show_windows(model, example, answer=None):
    """How ``model`` reads one example: a dict per window with its ``tokens`` (strings), the context
    characters it covers (``chars``: first, one past the last) and, when ``answer`` (SQuAD's format)
    is given, the answer's tokens in it (``answer_tokens``: (start, end), or None where it is not whole)."""
    spec = model.input_spec
    y = None if answer is None else [answer]
    enc = windows(spec["tokenizer"], [example], y, spec["max_length"], spec.get("stride", 64))
    tok = _pair_tokenizer(spec["tokenizer"], spec["max_length"], spec.get("stride", 64))
    out = []
    for row in range(len(enc)):
        ids = enc.inputs["input_ids"][row][enc.inputs["attention_mask"][row] == 1]
        off = enc.meta.offsets[row][enc.meta.offsets[row][:, 0] >= 0]
        span = tuple(int(t) for t in enc.targets[row])
        out.append({"tokens": [tok.id_to_token(int(i)) for i in ids],
                    "chars": (int(off[0, 0]), int(off[-1, 1])) if len(off) else (0, 0),
                    "answer_tokens": None if answer is None or span == (0, 0) else span})
    return out


def mark(context, answer, start=None, around=60):
    """The part of ``context`` around ``answer`` (at character ``start``, or its first occurrence), with
    the answer in [[ ]] (the whole context, unmarked, when the answer is not in it)."""
    at = start if start is not None and context[start:start + len(answer)] == answer else \
        context.find(answer) if answer else -1
    if at < 0:
        return context
    a, b = max(0, at - around), min(len(context), at + len(answer) + around)
    return (("..." if a else "") + context[a:at] + "[[" + answer + "]]" + context[at + len(answer):b]
            + ("..." if b < len(context) else ""))
