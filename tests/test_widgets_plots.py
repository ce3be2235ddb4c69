"""The LiveView's and the RunBoard's plots, figures and controls, checked on tiny real CPU runs.

Each run is MobileNetV2 at 32 px on 5 digits per class, at most 2-3 steps per epoch (a second or two).
"""
import math
import os
import re

import ipywidgets as widgets
import pytest

import ftkit

pytest.importorskip("anywidget")

from ftkit_widgets import LiveView, RunBoard  # noqa: E402
from ftkit_widgets._plot import duration, short_number, style  # noqa: E402


def tiny_run(callbacks=(), **overrides):
    model = ftkit.load_model("mobilenet_v2", framework="torch", num_classes=10, image_size=32, verbose=False)
    data = ftkit.load_dataset("digits", verbose=False).subset(5)
    kw = {"strategy": "partial", "epochs": 2, "batch_size": 16, "max_steps_per_epoch": 2, "progress": False,
          **overrides}
    return ftkit.finetune(model, data, callbacks=list(callbacks), **kw)


class Spy(ftkit.Callback):
    """Placed after the LiveView: what the LiveView shows at each callback, next to the run record."""

    def __init__(self, live):
        self.live, self.begin, self.steps = live, None, []

    def _shown(self):
        lv = self.live
        bar, text = getattr(lv, "progress", None), getattr(lv, "progress_text", None)
        return {"plot": bytes(lv.plot.value), "stats": lv.stats.value, "title": lv.title.value,
                "progress": bar.value if bar else None, "max": bar.max if bar else None,
                "text": text.value if text else ""}

    def on_train_begin(self, run):
        self.begin = self._shown()

    def on_step_end(self, run, record):
        self.steps.append((self._shown(), run.steps_done, run.total_steps))


@pytest.fixture(scope="module")
def watched():
    """Two runs watched by one LiveView (groups share one LR: lr_ratio=None); what it showed in between."""
    live = LiveView(min_interval=0.0)
    first = tiny_run([live])
    after_first = {"plot": bytes(live.plot.value), "stats": live.stats.value}
    spy = Spy(live)
    second = tiny_run([live, spy], strategy="progressive", epochs=3, unfreeze_every=1)
    return {"live": live, "first": first, "second": second, "after_first": after_first, "spy": spy}


def lr_axes(fig, run):
    """The LR panels: each labelled with its group's name (first line) and its highest LR (second)."""
    return [ax for ax in fig.axes if ax.get_ylabel().split("\n")[0] in run.group_names]


def finite(values):
    return [v for v in values if v is not None and math.isfinite(v)]


# --- the LR of each group ------------------------------------------------------------------------------------
def test_each_group_has_its_own_lr_panel_and_frozen_stretches_are_shaded(watched):
    run = watched["first"]   # partial: the last groups train with the same LR, the others are frozen throughout
    assert run.config.lr_ratio is None
    fig = LiveView.figure(run)
    axes = lr_axes(fig, run)
    # one labelled panel per group, input to output
    assert [ax.get_ylabel().split("\n")[0] for ax in axes] == run.group_names
    styles = set()
    for g, ax in enumerate(axes):
        lrs = [s["lrs"][g] for s in run.history["steps"]]
        lines = [ln for ln in ax.get_lines() if finite(ln.get_ydata())]
        if any(lrs):   # trained: its own visible line, inside the panel's y range
            assert len(lines) == 1
            lo, hi = ax.get_ylim()
            assert all(lo < y < hi for y in finite(lines[0].get_ydata()))
            ln = lines[0]
            styles.add((ln.get_color(), ln.get_marker(), ln.get_linestyle()))
            assert ax.get_ylabel().endswith(f"max {short_number(max(lrs))}")
        else:          # frozen every step: an explicit grey band saying so, no line
            assert not lines
            assert ax.patches, f"no frozen band in {ax.get_ylabel()}"
            assert any("frozen" in t.get_text() for t in ax.texts) and ax.get_ylabel().endswith("frozen")
    trained = sum(1 for g in range(len(axes)) if any(s["lrs"][g] for s in run.history["steps"]))
    assert trained >= 2 and len(styles) == trained   # colour + marker + line style differ between groups


def test_progressive_unfreezing_shows_the_frozen_stretch_before_each_group_starts(watched):
    run = watched["second"]   # progressive over 3 epochs: blocks_14_18 starts in epoch 2, blocks_7_13 in epoch 3
    axes = lr_axes(LiveView.figure(run), run)
    steps = run.history["steps"]
    later = 0
    for g, ax in enumerate(axes):
        frozen = [s["step"] for s in steps if s["lrs"][g] == 0]
        if not frozen or len(frozen) == len(steps):
            continue
        later += 1
        assert len(ax.patches) == 1   # one band from the first step to the step before the group starts
        band = ax.patches[0]
        assert (band.get_x(), band.get_x() + band.get_width()) == (frozen[0] - 0.5, frozen[-1] + 0.5)
        ys = ax.get_lines()[0].get_ydata()
        assert all(math.isnan(ys[s]) for s in frozen) and finite(ys[len(frozen):])
    assert later == 2


# --- every axis labelled; the same 0-1 accuracy scale -------------------------------------------------------
def _assert_labelled(fig):
    for ax in fig.axes:
        assert ax.get_ylabel().strip(), f"axes {ax.get_title()!r} has no y label"
        shared = ax.get_shared_x_axes().get_siblings(ax)
        assert any(a.get_xlabel().strip() for a in shared), f"axes {ax.get_title()!r} has no x label"


def test_every_axis_is_labelled(watched):
    run = watched["first"]
    _assert_labelled(LiveView.figure(run))
    _assert_labelled(RunBoard.figure([run, watched["second"]]))
    ylabels = [ax.get_ylabel() for ax in LiveView.figure(run).axes]
    assert "loss (cross-entropy)" in ylabels and "score (0-1)" in ylabels
    supy = [sf._supylabel.get_text() for sf in LiveView.figure(run).subfigs if sf._supylabel is not None]
    assert "learning rate (log scale)" in supy


def test_accuracy_axes_run_from_0_to_1_on_the_live_view_and_the_runboard(watched):
    runs = [watched["first"], watched["second"]]
    live_metric = [ax for ax in LiveView.figure(runs[0]).axes if ax.get_title() == "validation metrics"]
    board_acc = [ax for ax in RunBoard.figure(runs).axes if "accuracy" in ax.get_title()]
    for ax in live_metric + board_acc:
        lo, hi = ax.get_ylim()
        assert lo == 0 and 1 <= hi <= 1.05, ax.get_title()
    assert len(live_metric) == 1 and len(board_acc) == 1
    zoomed = [ax for ax in RunBoard.figure(runs, zoom=True).axes if "accuracy" in ax.get_title()][0]
    assert "(zoomed)" in zoomed.get_title() and zoomed.get_ylim()[1] < 1


# --- RunBoard: framework, rename, hide, CSV ------------------------------------------------------------------
def test_runboard_legend_and_table_show_the_framework(watched):
    runs = [watched["first"], watched["second"]]
    board = RunBoard(runs=runs)
    for ax in RunBoard.figure(runs).axes:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels and all(f"({r.framework}" in lab for r, lab in zip(runs, labels))
    assert "<th style='padding:2px 6px;vertical-align:top;text-align:left'>framework</th>" in board.table.value
    assert "data-col='framework'>torch</td>" in board.table.value
    assert "max-width:18em;white-space:normal" in board.table.value  # the settings column wraps


def test_runs_can_be_renamed_and_hidden(watched):
    first, second = watched["first"], watched["second"]
    names = first.name, second.name
    board = RunBoard(runs=[first, second])
    try:
        board.rename(first, "baseline")
        assert first.name == "baseline" and board.rows()[0]["run"] == "baseline"
        with pytest.raises(ValueError):
            board.rename(second, "baseline")   # names stay unique
        # the controls do the same
        board.rename_choice.value = second.name
        board.rename_text.value = "progressive"
        board.rename_button.click()
        assert second.name == "progressive" and "renamed" in board.rename_note.value
        before = bytes(board.plot.value)
        board.hide("baseline")
        assert board.hidden == ["baseline"] and board.visible_runs() == [second]
        fig = RunBoard.figure(board.runs, hide=[first])
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert labels == ["progressive (torch, progressive)"]
        kept = fig.axes[0].get_lines()[0]   # the shown run keeps its own colour and marker
        assert (kept.get_color(), kept.get_marker()) == (style(1)["color"], style(1)["marker"])
        assert bytes(board.plot.value) != before
        row = re.search(r"<tr data-run='baseline'[^>]*>", board.table.value).group(0)
        assert "data-hidden='true'" in row and "color:#9a9a9a" in row and "(hidden)" in board.table.value
        box = {b.description: b for b in board.show_boxes.children}
        assert box["baseline"].value is False and box["progressive"].value is True
        box["baseline"].value = True   # tick it: shown again
        assert board.hidden == []
        box = {b.description: b for b in board.show_boxes.children}
        box["progressive"].value = False
        assert board.hidden == ["progressive"]
        board.show(second)
        assert board.hidden == [] and len(board.rows()) == 2
    finally:
        first.name, second.name = names


def test_every_control_has_a_tooltip(watched):
    def controls(w):
        if isinstance(w, widgets.Box):
            for c in w.children:
                yield from controls(c)
        elif not isinstance(w, (widgets.HTML, widgets.Image, widgets.Label)):
            yield w
    board = RunBoard(runs=[watched["first"]])
    found = list(controls(board)) + list(controls(watched["live"]))
    kinds = {type(w).__name__ for w in found}
    assert {"Button", "ToggleButton", "Text", "Dropdown", "IntProgress"} <= kinds
    for w in found:
        assert w.tooltip and len(w.tooltip) > 10, f"{type(w).__name__} {getattr(w, 'description', '')!r}"


def test_csv_export_goes_to_the_runs_folder_and_the_note_clears(watched, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    board = RunBoard(runs=[watched["first"]])
    assert board.csv_path == os.path.join("runs", "ftkit_runs.csv")
    path = board.export()
    assert path == str(tmp_path / "runs" / "ftkit_runs.csv") and os.path.isfile(path)
    assert not (tmp_path / "ftkit_runs.csv").exists()
    assert "wrote" in board.export_note.value and "download" in board.export_note.value
    board.refresh()
    assert board.export_note.value == ""


# --- LiveView: one truth, progress, a new run -------------------------------------------------------------------
def test_live_stats_and_progress_come_from_the_run_record(watched):
    live, run = watched["live"], watched["second"]
    assert (live.progress.value, live.progress.max) == (run.steps_done, run.total_steps)
    assert live.progress_text.value == f"step {run.steps_done}/{run.total_steps}, finished"
    stats = live.stats.value
    assert f"elapsed {duration(run.elapsed)}" in stats
    last, best = run.history["epochs"][-1], run.best_epoch
    assert f"{last['samples_per_sec']:.1f} samples/s" in stats
    assert f"best epoch {best['epoch'] + 1}</b> (lowest val loss): val accuracy {best['val_accuracy']:.3f}" in stats
    if best is not last:
        assert f"last epoch {last['epoch'] + 1}: val accuracy {last['val_accuracy']:.3f}" in stats
    assert f"kept the <b>{run.kept}</b> weights" in stats
    # while it ran, the bar followed run.steps_done / run.total_steps at every step, with the time left
    assert watched["spy"].steps
    for shown, done, total in watched["spy"].steps:
        assert (shown["progress"], shown["max"]) == (done, total)
        assert shown["text"].startswith(f"step {done}/{total}, ")
        assert shown["text"].endswith(" left") or shown["text"].endswith("estimating...")


def test_live_stats_and_runboard_row_carry_the_same_figures(watched):
    run = watched["second"]
    def attrs(text):
        return dict(re.findall(r"data-(epochs|steps|best-accuracy)='([^']*)'", text))
    expected = {"epochs": str(len(run.history["epochs"])), "steps": str(run.steps_done),
                "best-accuracy": f"{run.best_epoch['val_accuracy']:.3f}"}
    assert attrs(watched["live"].stats.value) == expected
    board = RunBoard(runs=[run])
    assert attrs(board.table.value) == expected
    row = board.rows()[0]
    assert (row["epochs"], row["steps"], row["best_val_accuracy"]) == (
        len(run.history["epochs"]), run.steps_done, run.best_epoch["val_accuracy"])


def test_a_new_run_replaces_the_previous_plot_and_figures_at_once(watched):
    begin, after_first = watched["spy"].begin, watched["after_first"]
    assert begin["plot"] != after_first["plot"] and begin["plot"].startswith(b"\x89PNG")
    assert begin["progress"] == 0 and begin["text"].startswith("step 0/")
    assert "best epoch" not in begin["stats"] and "kept" not in begin["stats"]
    assert after_first["stats"] != begin["stats"]
    assert watched["second"].name in begin["title"] and "running" in begin["title"]


def test_a_stopped_run_says_how_far_its_last_epoch_got_and_which_weights_it_kept():
    class StopAfterTwo(ftkit.Callback):
        def on_step_end(self, run, record):
            if record["step"] == 1:
                run.request_stop()

    live = LiveView(min_interval=0.0)
    run = tiny_run([StopAfterTwo(), live], max_steps_per_epoch=3, batch_size=8)
    assert run.status == "stopped" and "after 2 of 3 steps" in run.message
    assert "stopped in epoch 1 after 2 of 3 steps" in live.stats.value
    assert "kept the <b>last</b> weights" in live.stats.value
    assert live.progress_text.value == f"step 2/{run.total_steps}, stopped" and live.progress.bar_style == "warning"


def test_clear_empties_the_view():
    live = LiveView()
    live.clear("Loading the model...")
    assert live.progress.value == 0 and live.stats.value == "" and "Loading the model" in live.title.value
    live.redraw()   # nothing to draw: no error
