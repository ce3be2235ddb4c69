"""Tokenization, written once for both frameworks with the ``tokenizers`` library."""
from functools import lru_cache

import numpy as np

from .errors import ConfigError, whole_number


@lru_cache(maxsize=4)
def _tokenizer(path, max_length):
    """The tokenizer in ``path``, truncating and padding to ``max_length`` tokens (None: neither)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path)
    if max_length is None:          # tokenizer.json files may carry their own settings: turn both off
        tok.no_truncation()
        tok.no_padding()
    else:
        tok.enable_truncation(max_length=max_length)
        tok.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    return tok


def special_ids(path):
    """The ids of [CLS], [SEP] and [PAD] in the tokenizer file ``path`` (a seq2seq decoder's start, end and
    padding tokens)."""
    tok = _tokenizer(path, None)
    return {t: tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")}


def tokenize(model, texts):
    """Token ids and attention mask (NumPy int32, shape (N, max_length)) for ``model``'s tokenizer."""
    spec = model.input_spec
    tok = _tokenizer(spec["tokenizer"], spec["max_length"])
    enc = tok.encode_batch([str(t) for t in texts])
    return {"input_ids": np.asarray([e.ids for e in enc], dtype=np.int32),
            "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int32)}


class Tokens:
    """What :func:`show_tokens` returns: a text as the model's input, one row per position.

    Lists, one entry per position (``max_length`` of them): ``tokens`` (the token strings), ``ids`` (what
    the model reads), ``kinds`` and ``spans`` (the piece of the text each token came from; "" for special
    and padding tokens), ``attention_mask`` (1 where the model attends, 0 on padding). A kind is

    * ``"special"``: added by the tokenizer, not from the text ([CLS] first, [SEP] last);
    * ``"word"``: the first (or only) piece of a word;
    * ``"piece"``: a later piece of the same word (WordPiece writes these ``##...``);
    * ``"padding"``: [PAD], filling the positions after [SEP]; the attention mask hides them.

    ``needed`` is the number of tokens the whole text makes, specials included; when it exceeds
    ``max_length`` the text was ``truncated`` and ``dropped`` lists the text's tokens cut off the end.
    Printed (or shown as a cell's result) it is a table, with the padding on one line.
    """

    def __init__(self, text, max_length, encoding, full):
        self.text, self.max_length = text, max_length
        self.tokens, self.ids = list(encoding.tokens), list(encoding.ids)
        self.attention_mask = list(encoding.attention_mask)
        self.kinds, self.spans = [], []
        words = encoding.word_ids
        for i, (special, mask, (a, b)) in enumerate(zip(encoding.special_tokens_mask, self.attention_mask,
                                                        encoding.offsets)):
            if not mask:
                kind = "padding"
            elif special:
                kind = "special"
            elif i > 0 and self.kinds[-1] in ("word", "piece") and words[i] == words[i - 1]:
                kind = "piece"
            else:
                kind = "word"
            self.kinds.append(kind)
            self.spans.append(text[a:b] if kind in ("word", "piece") else "")
        self.needed = len(full.ids)
        kept = sum(k in ("word", "piece") for k in self.kinds)
        text_tokens = [t for t, s in zip(full.tokens, full.special_tokens_mask) if not s]
        self.dropped = text_tokens[kept:]

    @property
    def truncated(self):
        """True when the text needs more than ``max_length`` tokens and its end was cut off."""
        return bool(self.dropped)

    @property
    def padding(self):
        """The number of padding positions."""
        return self.kinds.count("padding")

    def __len__(self):
        return len(self.tokens)

    def __str__(self):
        head = (f"{self.text!r}\n{self.needed} tokens needed (specials included), max_length {self.max_length}: "
                + (f"TRUNCATED, {len(self.dropped)} text tokens cut off: {' '.join(self.dropped)}" if self.truncated
                   else f"fits, {self.padding} padding positions"))
        rows = [head, f"{'pos':>4}  {'token':<16}{'id':>7}  {'kind':<8}  from the text"]
        n = len(self.tokens)
        first_pad = self.kinds.index("padding") if "padding" in self.kinds else n
        for i in range(first_pad):
            rows.append(f"{i:>4}  {self.tokens[i]:<16}{self.ids[i]:>7}  {self.kinds[i]:<8}  {self.spans[i]}")
        if first_pad < n:
            rows.append(f"{first_pad:>4}  {self.tokens[first_pad]:<16}{self.ids[first_pad]:>7}  padding   "
                        f"(positions {first_pad}-{n - 1}: {n - first_pad} x {self.tokens[first_pad]}, "
                        "attention mask 0)")
        return "\n".join(r.rstrip() for r in rows)

    __repr__ = __str__


def show_tokens(model, text, max_length=None):
    """How ``model`` reads ``text``: its tokenization, token by token (a :class:`Tokens`, printed as a table).

    Each of the ``max_length`` input positions (default: the model's own, ``model.input_spec["max_length"]``)
    gets its token, its id, its kind (special, word, piece of a word, padding) and the part of the text it
    came from; the ids are exactly those the model is fed (:func:`tokenize`). ``needed`` and ``dropped`` say
    whether the text fits or what truncation cut off. Give another ``max_length`` to see what it would do.

        print(ftkit.show_tokens(model, "An unwatchable mess."))
    """
    spec = getattr(model, "input_spec", {}) or {}
    if "tokenizer" not in spec:
        raise ConfigError(f"show_tokens: {getattr(model, 'name', model)!r} is not a text model (it has no "
                          "tokenizer); load one such as ftkit.load_model('minilm', num_classes=2)")
    if not isinstance(text, str):
        raise ConfigError(f"show_tokens: give one text (a str), not {type(text).__name__}")
    max_length = spec["max_length"] if max_length is None else whole_number("max_length", max_length, low=2)
    encoding = _tokenizer(spec["tokenizer"], max_length).encode(text)
    full = _tokenizer(spec["tokenizer"], None).encode(text)
    return Tokens(text, max_length, encoding, full)
