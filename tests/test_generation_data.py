"""The offline translation set (ftkit.translation_data) and the generation metrics (sacrebleu's BLEU and chrF,
exact match) on hand-worked cases."""
import datetime as dt
import math

import pytest

from ftkit.errors import ConfigError, DataError
from ftkit.metrics import generation_metrics
from ftkit.translation_data import check_held_out, phrase, phrase_pairs


# -- metrics -----------------------------------------------------------------------------------------------
def test_bleu_of_a_hand_worked_pair():
    """'the cat sat on mat' against 'the cat sat on the mat': n-gram precisions 5/5, 3/4, 2/3, 1/2 and a
    brevity penalty exp(1 - 6/5): BLEU = 100 * exp(-0.2) * (1 * 3/4 * 2/3 * 1/2) ** (1/4) = 57.89."""
    got = generation_metrics(["the cat sat on mat"], ["the cat sat on the mat"])
    assert got["bleu"] == pytest.approx(100 * math.exp(-0.2) * (0.75 * 2 / 3 * 0.5) ** 0.25, abs=1e-6)
    assert got["exact_match"] == 0.0
    same = generation_metrics(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert same["bleu"] == pytest.approx(100) and same["chrf"] == pytest.approx(100) and same["exact_match"] == 1.0


def test_chrf_of_a_hand_worked_pair():
    """'abc' against 'abd': character 1-grams match 2 of 3, 2-grams 1 of 2, 3-grams 0 of 1 (no longer n-grams
    exist); precision = recall = (2/3 + 1/2 + 0) / 3, so chrF = 38.89."""
    got = generation_metrics(["abc"], ["abd"])
    assert got["chrf"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 3, abs=1e-6)


def test_several_references_and_normalisation():
    hyps = ["a b c d e", "f g h i j"]
    # the second hypothesis has one reference, the first two: the best counts over both are used
    one = generation_metrics(hyps, [["z z z z z", "a b c d e"], "f g h i k"])
    assert one["exact_match"] == 0.5
    assert one["bleu"] == pytest.approx(generation_metrics(hyps, ["a b c d e", "f g h i k"])["bleu"])
    assert generation_metrics(["Cinq Mille"], ["cinq mille"], normalize=str.lower)["exact_match"] == 1.0


@pytest.mark.parametrize("hyps, refs, message", [
    (["a"], ["a", "b"], "1 hypotheses but 2 references"),
    ([], [], "no hypotheses"),
    ([3], ["a"], "hypotheses[0] is a int"),
    (["a"], [[]], "references[0] is empty"),
    (["a"], [[None]], "references[0][0] is a NoneType"),
])
def test_bad_metric_inputs_are_refused(hyps, refs, message):
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        generation_metrics(hyps, refs)


# -- the offline translation set ---------------------------------------------------------------------------
def test_phrases_come_from_the_localisation_libraries():
    assert phrase("number", 321, "en") == "three hundred and twenty-one"
    assert phrase("number", 321, "fr") == "trois cent vingt et un"
    assert phrase("number", 80, "fr") == "quatre-vingts"
    assert phrase("date", dt.date(1998, 5, 9), "en") == "Saturday, May 9, 1998"
    assert phrase("date", dt.date(1998, 5, 9), "fr") == "samedi 9 mai 1998"
    assert phrase("date", dt.date(1998, 8, 1), "fr") == "samedi 1 août 1998"
    assert phrase("time", dt.time(15, 45), "en") == "3:45 PM"
    assert phrase("time", dt.time(15, 45), "fr") == "15 h 45"
    assert phrase("time", dt.time(9, 5), "de") == "9:05 Uhr"


def test_splits_are_seeded_held_out_and_balanced():
    splits, kinds = phrase_pairs(200, seed=3)
    again, _ = phrase_pairs(200, seed=3)
    other, _ = phrase_pairs(200, seed=4)
    assert {w: len(s) for w, s in splits.items()} == {"train": 480, "val": 60, "test": 60}
    assert all(splits[w].x == again[w].x and splits[w].y == again[w].y for w in splits)
    assert splits["train"].x != other["train"].x
    train = set(splits["train"].x)
    for which in ("val", "test"):
        assert not train & set(splits[which].x)
        assert sorted(set(kinds[which])) == ["date", "number", "time"]
        assert len(set(splits[which].x)) == len(splits[which].x)
    for src, tgt, kind in zip(splits["test"].x, splits["test"].y, kinds["test"]):   # each pair is one value
        if kind == "time":
            clock = dt.datetime.strptime(src, "%I:%M %p")
            assert tgt == f"{clock.hour} h {clock.minute:02d}"


def test_held_out_check_and_bad_settings():
    splits, _ = phrase_pairs(20, seed=0)
    splits["test"].x[0] = splits["train"].x[5]
    with pytest.raises(DataError, match="test phrase .* also occurs in train"):
        check_held_out(splits)
    with pytest.raises(ConfigError, match="target='es'"):
        phrase_pairs(100, target="es")
    with pytest.raises(ConfigError, match="n_per_kind=5"):
        phrase_pairs(5)
    with pytest.raises(ConfigError, match="kinds: 'weather'"):
        phrase_pairs(100, kinds=("number", "weather"))
