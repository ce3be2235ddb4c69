"""Tokenization, written once for both frameworks with the ``tokenizers`` library."""
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def _tokenizer(path, max_length):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path)
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    return tok


def tokenize(model, texts):
    """Token ids and attention mask (NumPy int32, shape (N, max_length)) for ``model``'s tokenizer."""
    spec = model.input_spec
    tok = _tokenizer(spec["tokenizer"], spec["max_length"])
    enc = tok.encode_batch([str(t) for t in texts])
    return {"input_ids": np.asarray([e.ids for e in enc], dtype=np.int32),
            "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int32)}
