"""Extractive question answering (ftkit.tasks.qa): windows and offsets, post-processing, SQuAD scoring,
the span-head models of both frameworks, bad inputs, saved runs, and a real fine-tuning run."""
import numpy as np
import pytest

import ftkit
from ftkit import ConfigError, DataError
from ftkit.models import minilm_path
from ftkit.tasks import qa

TOKENIZER = f"{minilm_path()}/tokenizer.json"
QUESTION = "Who plays Neha?"
CONTEXT = ("Rajput blackmails Neha (Sushmita Sen) to use her professional skills to help his plan, to train three "
           "blind men to rob the bank for him. Then more text here follows.")
SEN = CONTEXT.index("Sushmita Sen")


def example(answer, start=None, question=QUESTION, context=CONTEXT):
    start = context.index(answer) if start is None else start
    return {"question": question, "context": context}, {"text": [answer], "answer_start": [start]}


# ------------------------------------------------------------------------------------ windows and offsets

def test_one_window_labels_the_answer_tokens_worked_by_hand():
    # [CLS] who plays ne ##ha ? [SEP] raj ##put blackmail ##s ne ##ha ( su ##sh ##mit ##a sen ) ...
    #   0    1    2    3   4   5   6    7    8      9      10  11  12  13 14  15   16   17  18  19
    x, y = example("Sushmita Sen")
    enc = qa.windows(TOKENIZER, [x], [y], max_length=64, stride=8)
    assert len(enc) == 1 and enc.targets.tolist() == [[14, 18]]
    assert enc.inputs["input_ids"].shape == (1, 64) and enc.inputs["input_ids"].dtype == np.int32
    assert enc.inputs["token_type_ids"][0, :7].tolist() == [0] * 7 and enc.inputs["token_type_ids"][0, 7] == 1
    off = enc.meta.offsets[0]
    assert (off[:7] == -1).all(), "question and special tokens map to no context characters"
    s, e = enc.targets[0]
    assert CONTEXT[off[s, 0]:off[e, 1]] == "Sushmita Sen"   # tokens back to characters


def test_long_contexts_are_cut_into_overlapping_windows_that_cover_every_character():
    x, y = example("more text here follows")
    enc = qa.windows(TOKENIZER, [x], [y], max_length=24, stride=4)
    assert len(enc) == 4 and enc.meta.example.tolist() == [0, 0, 0, 0]
    # the answer is whole in the last two windows only (worked by hand from the tokens): labelled there,
    # (0, 0) ([CLS]) where a window does not hold it
    # window 2: [CLS] who plays ne ##ha ? [SEP] train three blind men to rob the bank for him . then more text
    #             here follows [SEP]: "more" is token 19, "follows" 22; window 3 opens with them at 7..10
    assert enc.targets.tolist() == [[0, 0], [0, 0], [19, 22], [7, 10]]
    for row in (2, 3):
        s, e = enc.targets[row]
        assert CONTEXT[enc.meta.offsets[row][s, 0]:enc.meta.offsets[row][e, 1]] == "more text here follows"
    covered = np.zeros(len(CONTEXT), bool)
    for off in enc.meta.offsets:
        for a, b in off[off[:, 0] >= 0]:
            covered[a:b] = True
    assert all(covered[i] for i, ch in enumerate(CONTEXT) if not ch.isspace()), "a part of the context is in no window"
    # neighbours share `stride` tokens: the last 4 context tokens of window 0 open window 1
    ctx = [enc.inputs["input_ids"][r][enc.meta.offsets[r][:, 0] >= 0] for r in range(2)]
    assert ctx[0][-4:].tolist() == ctx[1][:4].tolist()


def test_an_answer_cut_by_a_window_edge_is_labelled_only_where_it_is_whole():
    x, y = example("professional skills to help his plan")
    enc = qa.windows(TOKENIZER, [x], [y], max_length=24, stride=4)
    whole = [r for r in range(len(enc)) if tuple(enc.targets[r]) != (0, 0)]
    assert len(whole) == 1
    s, e = enc.targets[whole[0]]
    assert CONTEXT[enc.meta.offsets[whole[0]][s, 0]:enc.meta.offsets[whole[0]][e, 1]] == y["text"][0]


# --------------------------------------------------------------------------------------- post-processing

def logits_for(enc, row_spans, low=-5.0):
    """Start/end logits (rows, tokens) that peak at the given (start, end, height) of each row."""
    n, L = enc.inputs["input_ids"].shape
    start, end = np.full((n, L), low, np.float32), np.full((n, L), low, np.float32)
    for row, (s, e, h) in row_spans.items():
        start[row, s], end[row, e] = h, h
    return start, end


def test_best_answers_maps_the_best_span_back_to_the_text():
    x, y = example("Sushmita Sen")
    enc = qa.windows(TOKENIZER, [x], [y], max_length=64, stride=8)
    start, end = logits_for(enc, {0: (14, 18, 5.0)})
    assert qa.best_answers(start, end, enc.meta, [CONTEXT]) == ["Sushmita Sen"]
    start[0, 2] = end[0, 2] = 50.0            # the question's tokens are never an answer
    assert qa.best_answers(start, end, enc.meta, [CONTEXT]) == ["Sushmita Sen"]
    start[0, 18], end[0, 14] = 9.0, 9.0         # an end before its start is not a span: "sen" alone wins
    assert qa.best_answers(start, end, enc.meta, [CONTEXT]) == ["Sen"]
    start, end = logits_for(enc, {0: (9, 30, 5.0)})   # 22 tokens: too long with max_answer_length=10
    assert qa.best_answers(start, end, enc.meta, [CONTEXT], max_answer_length=10) != \
        qa.best_answers(start, end, enc.meta, [CONTEXT], max_answer_length=30)


def test_best_answers_takes_the_best_window():
    x, y = example("more text here follows")
    enc = qa.windows(TOKENIZER, [x], [y], max_length=24, stride=4)
    start, end = logits_for(enc, {0: (7, 7, 2.0), 3: (7, 10, 4.0)})
    assert qa.best_answers(start, end, enc.meta, [CONTEXT]) == ["more text here follows"]


# ------------------------------------------------------------------------------------------ SQuAD scores

@pytest.mark.parametrize("text, normalised", [
    ("The Cat, sat!", "cat sat"), ("  an   Apple a day ", "apple day"), ("Theatre", "theatre"),
    ("Paul Giamatti's", "paul giamattis")])
def test_squad_normalisation(text, normalised):
    assert qa.normalize_answer(text) == normalised


def test_squad_exact_match_and_f1_worked_by_hand():
    assert qa.exact_match("the Eiffel Tower", "Eiffel Tower.") == 1.0
    assert qa.exact_match("Eiffel", "Eiffel Tower") == 0.0
    assert qa.f1("Paul Giamatti", "Giamatti") == pytest.approx(2 / 3)    # P 1/2, R 1
    assert qa.f1("x b c d", "c d e") == pytest.approx(2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3))   # 4/7
    assert qa.f1("a b c d", "c d e") == pytest.approx(2 / 3)   # the article goes: "b c d", P = R = 2/3
    assert qa.f1("the", "a") == 0.0                                      # nothing left after normalising
    scores = qa.squad_scores(["Sen", "Paul Giamatti", "nobody"],
                             [{"text": ["Sushmita Sen", "Sen"], "answer_start": [0, 9]},   # best gold: EM 1
                              {"text": ["Giamatti"], "answer_start": [5]},
                              {"text": ["Ossie Davis"], "answer_start": [0]}])
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


# ---------------------------------------------------------------------------------------------- bad input

def qa_data(x, y):
    from ftkit.data import Split
    s = ftkit.data.Split(list(x), list(y))
    return ftkit.Dataset("mine", {"train": s, "val": s, "test": s}, task="qa", modality="text")


@pytest.mark.parametrize("change, message", [
    (lambda x, y: ({**x, "context": "  "}, y), "example 1: the context is empty"),
    (lambda x, y: ({**x, "question": 7}, y), "example 1: question is a int"),
    (lambda x, y: (x, {"text": [], "answer_start": []}), "example 1 has no answer"),
    (lambda x, y: (x, {"text": ["Sushmita Sen"], "answer_start": [SEN + 1]}), "is not the context's text at"),
    (lambda x, y: (x, {"text": ["Sushmita Sen"], "answer_start": [-1]}), "answer_start=-1 must be"),
    (lambda x, y: ("Who?", y), "give a dict with 'question' and 'context'"),
])
def test_bad_examples_are_refused_naming_the_example(change, message):
    good = example("Sushmita Sen")
    bad = change(*good)
    with pytest.raises(DataError, match=message):
        qa_data([good[0], bad[0]], [good[1], bad[1]])


def test_a_question_too_long_for_the_window_is_refused():
    x, y = example("Sushmita Sen", question="Who plays " + "the one " * 40 + "Neha?")
    with pytest.raises(DataError, match="the question takes .* more than half"):
        qa.windows(TOKENIZER, [x], [y], max_length=64, stride=8)


def test_qa_options_are_checked_when_the_model_is_loaded():
    with pytest.raises(ConfigError, match="task='qa' needs a text model"):
        ftkit.load_model("mobilenet_v2", task="qa", verbose=False)
    with pytest.raises(ConfigError, match="no classes; leave num_classes=None"):
        ftkit.load_model("minilm", task="qa", num_classes=2, verbose=False)
    with pytest.raises(ConfigError, match="stride=40 must be less than half"):
        ftkit.load_model("minilm", task="qa", max_length=64, stride=40, verbose=False)
    with pytest.raises(ConfigError, match="stride=8 applies to task='qa'"):
        ftkit.load_model("minilm", num_classes=2, stride=8, verbose=False)


# ---------------------------------------------------------------------------------- models and training

@pytest.fixture(scope="module")
def cast():
    return ftkit.load_dataset("plot_cast_qa", verbose=False)


def test_the_offline_set_is_real_text_with_spans_that_match(cast):
    assert cast.task == "qa" and cast.modality == "text" and "plot summaries" in cast.source
    sizes = {k: len(s) for k, s in cast.splits.items()}
    assert sizes["train"] >= 400 and min(sizes.values()) >= 80, sizes
    contexts = {k: {ex["context"] for ex in s.x} for k, s in cast.splits.items()}
    assert not contexts["train"] & contexts["test"], "a test plot is also in training"
    # squad falls back to it offline, and says which it used
    squad = ftkit.load_dataset("squad", verbose=False)
    assert squad.name == "plot_cast_qa" and "the offline fallback for 'squad'" in squad.source


STORY = ("Vijay Singh Rajput (Amitabh Bachchan) is a quirky bank manager. Rajput blackmails Neha (Sushmita Sen) "
         "into training three blind men, Vishwas (Akshay Kumar), Arjun (Arjun Rampal) and Ilias (Paresh Rawal).")
CAST = [("Vijay Singh Rajput", "Amitabh Bachchan"), ("Neha", "Sushmita Sen"), ("Vishwas", "Akshay Kumar"),
        ("Arjun", "Arjun Rampal")]


def story_data():
    """Eight questions about one short plot, as every split: a fixed batch."""
    x, y = [], []
    for character, actor in CAST:
        for question, answer in ((f"Who plays {character}?", actor), (f"Who does {actor} play?", character)):
            at = STORY.index(f"{character} ({actor})") + (len(character) + 2 if answer == actor else 0)
            x.append({"question": question, "context": STORY})
            y.append({"text": [answer], "answer_start": [at]})
    s = ftkit.data.Split(x, y)
    return ftkit.Dataset("story", {"train": s, "val": s, "test": s}, task="qa", modality="text")


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_the_span_head_trains_and_a_saved_run_loads_back(framework, tmp_path):
    data = story_data()
    model = ftkit.load_model("minilm", framework=framework, task="qa", max_length=64, verbose=False)
    assert model.task == "qa" and model.group_names[-1] == "head" and model.param_counts()[-1] == 384 * 2 + 2
    before = ftkit.evaluate(model, data, "test")
    assert set(before) == {"loss", "exact_match", "f1"} and np.isfinite(before["loss"])
    base = ftkit.analysis.snapshot(model)
    run = ftkit.finetune(model, data, strategy="full", epochs=4, batch_size=8, lr=1e-4, progress=False)
    losses = [e["val_loss"] for e in run.history["epochs"]]
    print(framework, before["loss"], losses)
    # 16 rows (the plot does not fit one 64-token window with a question: two windows each), 2 steps an epoch
    assert run.steps_done == 8 and losses[-1] < 0.8 * before["loss"], (before["loss"], losses)
    assert "val_f1" in run.history["epochs"][-1] and "train_accuracy" not in run.history["epochs"][-1]
    assert any(not np.array_equal(a, b) for a, b in zip(base["embeddings"], ftkit.analysis.snapshot(model)["embeddings"]))
    answers = model.predict(data.test.x)
    assert len(answers) == 8 and all(isinstance(a, str) and a in STORY for a in answers), answers
    saved = ftkit.load_run(run.save(str(tmp_path / "qa")))
    assert saved.model.task == "qa" and saved.model.input_spec["max_length"] == 64
    assert saved.model.predict(data.test.x) == answers
    assert ftkit.evaluate(saved.model, data, "test")["loss"] == pytest.approx(ftkit.evaluate(model, data, "test")["loss"],
                                                                             rel=1e-5)


def test_bad_qa_data_stops_before_any_step_and_changes_nothing(cast):
    model = ftkit.load_model("minilm", task="qa", max_length=64, verbose=False)
    before = ftkit.analysis.snapshot(model)
    with pytest.raises(DataError, match="is for task 'qa' but dataset 'rotten_tomatoes' is 'classification'"):
        ftkit.finetune(model, ftkit.load_dataset("rotten_tomatoes", verbose=False).subset(2), progress=False)
    with pytest.raises(ConfigError, match="class_weights='balanced' weights each example's loss"):
        ftkit.finetune(model, cast.subset(4, per_class=False), class_weights="balanced", progress=False)
    with pytest.raises(ConfigError, match="sampler='curriculum' orders"):
        ftkit.finetune(model, cast.subset(4, per_class=False), sampler="curriculum", progress=False)
    after = ftkit.analysis.snapshot(model)
    assert all(np.array_equal(a, b) for g in before for a, b in zip(before[g], after[g]))


@pytest.mark.slow
def test_fine_tuning_minilm_on_the_offline_set_raises_f1_well_above_the_untrained_head(cast):
    """Measured (torch, CPU): 200 steps of 4 windows (96 tokens) take test F1 from 0.065 to 0.842 (exact match
    0.00 to 0.77) on 60 questions about plots never trained on."""
    data = cast.subset(150, per_class=False, eval_n=60)
    model = ftkit.load_model("minilm", task="qa", max_length=96, verbose=False)
    before = ftkit.evaluate(model, data, "test")
    run = ftkit.finetune(model, data, epochs=2, batch_size=4, lr=1e-4, max_steps_per_epoch=100, progress=False)
    after = ftkit.evaluate(model, data, "test")
    print(run.steps_done, before, after)
    assert run.steps_done == 200
    assert before["f1"] < 0.15 and after["f1"] > before["f1"] + 0.3, (before, after)


def test_the_live_view_plots_a_qa_run_with_its_own_metrics():
    pytest.importorskip("anywidget")
    from ftkit_widgets import LiveView
    model = ftkit.load_model("minilm", task="qa", max_length=64, verbose=False)
    run = ftkit.finetune(model, story_data(), epochs=2, batch_size=8, max_steps_per_epoch=1, progress=False)
    fig = LiveView.figure(run)
    assert "loss (start and end cross-entropy)" in [ax.get_ylabel() for ax in fig.axes]
    metric = [ax for ax in fig.axes if ax.get_title() == "validation metrics"][0]
    assert {line.get_label() for line in metric.get_lines()} == {"exact match", "F1 (SQuAD)"}
    assert [list(line.get_ydata()) for line in metric.get_lines()] == \
        [[e["val_exact_match"] for e in run.history["epochs"]], [e["val_f1"] for e in run.history["epochs"]]]
