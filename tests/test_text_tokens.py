"""ftkit.show_tokens: a text as the model reads it, token by token."""
import numpy as np
import pytest

import ftkit
from ftkit.models import minilm_path
from ftkit.text import tokenize

TEXT = "An unwatchable, overlong mess -- but Streep is great!"


class TextModel:
    """What show_tokens and tokenize read from a text model: its input_spec (no framework needed)."""
    name = "minilm"

    def __init__(self, max_length):
        self.input_spec = {"modality": "text", "tokenizer": f"{minilm_path()}/tokenizer.json",
                           "max_length": max_length}


@pytest.mark.parametrize("max_length", [8, 19, 32])
def test_ids_are_what_the_model_is_fed(max_length):
    model = TextModel(max_length)
    for text in (TEXT, "", "fine.", TEXT * 3):
        t = ftkit.show_tokens(model, text)
        fed = tokenize(model, [text])
        assert len(t) == max_length
        assert t.ids == fed["input_ids"][0].tolist() and t.attention_mask == fed["attention_mask"][0].tolist()


def test_kinds_spans_and_padding():
    t = ftkit.show_tokens(TextModel(24), TEXT)
    assert t.tokens[:5] == ["[CLS]", "an", "un", "##watch", "##able"]
    assert t.kinds[:5] == ["special", "word", "word", "piece", "piece"]
    assert t.spans[:5] == ["", "An", "un", "watch", "able"]          # the original text, case kept
    assert t.needed == 19 and not t.truncated and t.dropped == []
    assert t.tokens[18] == "[SEP]" and t.kinds[18] == "special"
    assert t.kinds[19:] == ["padding"] * 5 and t.padding == 5 and t.attention_mask[19:] == [0] * 5
    assert all(k != "padding" for k in t.kinds[:19]) and t.attention_mask[:19] == [1] * 19
    shown = str(t)
    assert "##watch" in shown and "18866" in shown and "positions 19-23: 5 x [PAD]" in shown
    assert shown.count("[PAD]") == 2          # the padding is one line, not five


def test_truncation_cuts_the_end_and_says_what():
    model = TextModel(24)
    t = ftkit.show_tokens(model, TEXT * 2)
    assert t.needed == 2 + 2 * 17 and t.truncated
    assert len(t.dropped) == t.needed - 24, "the text tokens cut off: needed minus the 24 positions"
    assert t.tokens[-1] == "[SEP]" and t.kinds.count("padding") == 0
    kept = [tok for tok, k in zip(t.tokens, t.kinds) if k in ("word", "piece")]
    assert kept + t.dropped == 2 * t.tokens[1:18], "kept then dropped: the whole text, in order"
    assert "TRUNCATED" in str(t) and " ".join(t.dropped) in str(t)
    # another max_length shows what it would do, without changing the model
    longer = ftkit.show_tokens(model, TEXT * 2, max_length=64)
    assert not longer.truncated and longer.padding == 64 - 36 and model.input_spec["max_length"] == 24
    assert ftkit.show_tokens(model, TEXT * 2).ids == t.ids
    # counted whole, beyond the 128 tokens the tokenizer file itself would truncate to
    long = ftkit.show_tokens(model, TEXT * 10)
    assert long.needed == 2 + 10 * 17 and len(long.dropped) == long.needed - 24


def test_refuses_what_it_cannot_show():
    with pytest.raises(ftkit.ConfigError, match="not a text model"):
        ftkit.show_tokens(type("Img", (), {"input_spec": {"modality": "image"}, "name": "cnn"})(), TEXT)
    with pytest.raises(ftkit.ConfigError, match="one text"):
        ftkit.show_tokens(TextModel(16), [TEXT])
    with pytest.raises(ftkit.ConfigError, match="max_length"):
        ftkit.show_tokens(TextModel(16), TEXT, max_length=1)


def test_with_a_loaded_model():
    model = ftkit.load_model("minilm", framework="torch", num_classes=2, max_length=16, verbose=False)
    t = ftkit.show_tokens(model, TEXT)
    assert t.truncated and t.max_length == 16 and len(t.dropped) == 19 - 16
    assert np.array_equal(t.ids, tokenize(model, [TEXT])["input_ids"][0])
