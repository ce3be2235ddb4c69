"""LiveView: watch a run while it trains.

Three plots, redrawn while the run goes: the loss of every step (with each
epoch's train and validation loss), the validation metrics of each epoch (on a
fixed 0-1 scale, the same as the RunBoard's), and the learning rate of each
layer group, one small panel per group sharing the step axis, with the
stretches where a group was frozen shaded grey. Under them a progress bar
("step a/b, about T left") and a line with the elapsed time, samples per
second, the best epoch and, once the run ended, which weights it kept. Every
figure of that line comes from the run record (``run.steps_done``,
``run.total_steps``, ``run.elapsed``, ``run.time_left``, ``run.best_epoch``,
``run.kept``), so it agrees with the panel and the RunBoard.

A LiveView is also an ``ftkit.Callback``, so it works without the panel::

    live = LiveView()
    display(live)
    run = ftkit.finetune(model, data, config, callbacks=[live])

Redraws are throttled (at most one every ``min_interval`` seconds, plus one at
the end of every epoch and of the run), so drawing never slows training much.
When a run starts, the previous run's plot and figures are replaced at once by
a "starting ..." picture; ``clear(text)`` does the same by hand (for example
while a model loads, before the run exists).
"""
import html
import threading
import time

import ipywidgets as widgets
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator

import ftkit

from ._plot import (ACCURACY_YLIM, FROZEN_COLOUR, duration, figure_attrs, frozen_spans, gaps_at_zero, loss_label,
                    message_png, short_number, style, to_png)

_BAR_STYLE = {"finished": "success", "early_stopped": "success", "stopped": "warning", "diverged": "danger",
              "failed": "danger"}
_MONITOR_WORDS = {"val_loss": "lowest val loss", "val_accuracy": "highest val accuracy",
                  "val_f1_macro": "highest val F1", "val_map50": "highest val mAP@0.5"}


class LiveView(widgets.VBox, ftkit.Callback):
    """Live plots of one run (loss per step, metrics per epoch, LR per group), a progress bar and its figures."""

    def __init__(self, min_interval=0.75, **kwargs):
        self.title = widgets.HTML("<b>Live view</b>: no run yet.")
        self.title.add_class("ftkit-live-title")
        self.plot = widgets.Image(format="png", value=message_png("Press Train to see the loss, metrics and LRs."),
                                  layout=widgets.Layout(max_width="100%"))
        self.plot.add_class("ftkit-live-plot")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="320px"),
                                            tooltip="Optimizer steps done out of the run's total steps")
        self.progress.add_class("ftkit-live-progress")
        self.progress_text = widgets.HTML("", tooltip="Steps done, steps in the whole run and the estimated "
                                                      "time left (from the run record)")
        self.progress_text.add_class("ftkit-live-progress-text")
        self.stats = widgets.HTML("", tooltip="Figures of the run record: elapsed time, speed, best and last "
                                              "epoch, and which weights a finished run kept")
        self.stats.add_class("ftkit-live-stats")
        bar = widgets.HBox([self.progress, self.progress_text], layout=widgets.Layout(align_items="center"))
        super().__init__([self.title, self.plot, bar, self.stats], **kwargs)
        self.add_class("ftkit-live")
        self.min_interval = min_interval
        self.run = None
        self.redraws = 0          # how many times the plot was drawn (tests look at it)
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._last_stats = 0.0
        self._head = ""

    # --- ftkit.Callback ----------------------------------------------------------------------------------
    def on_train_begin(self, run):
        self.run = run
        self._last_draw = self._last_stats = 0.0
        c = run.config
        self._head = (f"<b>{html.escape(run.name)}</b>: {run.model_name} ({run.framework}) on {run.dataset_name}, "
                      f"strategy <b>{c.strategy}</b>, LR {c.lr:g}, {c.schedule} schedule, {c.epochs} epochs")
        self._set_status("running")
        # the previous run's plot and figures go at once, before the first step (which can take a while)
        with self._lock:
            self.plot.value = to_png(self.figure(run, note=f"starting {run.name}..."))
            self._update_text(run)

    def on_step_end(self, run, record):
        now = time.perf_counter()
        if now - self._last_draw >= self.min_interval:
            self.redraw()
        elif now - self._last_stats >= min(self.min_interval, 0.25):
            with self._lock:
                self._update_text(run)

    def on_epoch_end(self, run, record):
        self.redraw()

    def on_train_end(self, run):
        self.redraw()
        self._set_status(run.status, run.message)

    def _set_status(self, status, message=""):
        note = f" ({html.escape(message)})" if message else ""
        self.title.value = (f"{self._head}: <span class='ftkit-live-status' data-status='{status}'>"
                            f"<b>{status}</b></span>{note}")

    # --- drawing -------------------------------------------------------------------------------------------
    def clear(self, text="Starting..."):
        """Show ``text`` in place of the plot and empty the progress bar and stats (e.g. while a model loads)."""
        with self._lock:
            self.run = None
            self.plot.value = message_png(text)
            self.progress.value, self.progress.max, self.progress.bar_style = 0, 1, ""
            self.progress_text.value = ""
            self.stats.value = ""
            self.title.value = f"<b>Live view</b>: {html.escape(text)}"

    def redraw(self):
        """Draw the plots, the progress bar and the stats line from ``self.run`` now."""
        run = self.run
        if run is None:
            return
        with self._lock:  # the training thread and a Refresh click may both draw
            self._last_draw = time.perf_counter()
            self.plot.value = to_png(self.figure(run))
            self._update_text(run)
            self.redraws += 1

    def _update_text(self, run):
        self._last_stats = time.perf_counter()
        total = run.total_steps or 0
        self.progress.max = max(total, 1)
        self.progress.value = min(run.steps_done, self.progress.max)
        self.progress.bar_style = _BAR_STYLE.get(run.status, "")
        self.progress_text.value = self.progress_line(run)
        self.stats.value = self.stats_line(run)

    @staticmethod
    def progress_line(run):
        """'step a/b, about T left' (or how the run ended), from the run record."""
        text = f"step {run.steps_done}/{run.total_steps or 0}"
        if run.status in ("created", "running"):
            left = run.time_left
            return f"{text}, about {duration(left)} left" if left is not None else f"{text}, time left: estimating..."
        return f"{text}, {run.status}"

    @staticmethod
    def stats_line(run):
        """The figures under the plot, every one from the run record (HTML, parts joined by a dot)."""
        parts = [f"elapsed {duration(run.elapsed)}"]
        epochs = run.history["epochs"]
        if epochs:
            last = epochs[-1]
            cut_short = run.status == "stopped"   # its last epoch may have run only some of its steps
            parts.append(f"epoch {last['epoch'] + 1}/{run.config.epochs}{'' if cut_short else ' done'}")
            parts.append(f"{last['samples_per_sec']:.1f} samples/s (last epoch)")
            best = run.best_epoch
            if best is not None:
                why = _MONITOR_WORDS.get(run.config.monitor, f"best {run.config.monitor}")
                parts.append(f"<b>best epoch {best['epoch'] + 1}</b> ({why}): {_scores(best)}")
                if best is not last:
                    parts.append(f"last epoch {last['epoch'] + 1}: {_scores(last)}")
        if run.status == "stopped" and epochs:
            last = epochs[-1]
            per_epoch = run.total_steps // max(run.config.epochs, 1) if run.total_steps else "?"
            parts.append(f"stopped in epoch {last['epoch'] + 1} after {last['steps']} of {per_epoch} steps")
        if run.status not in ("created", "running") and run.kept:
            parts.append(f"kept the <b>{html.escape(run.kept)}</b> weights")
        return f"<span class='ftkit-live-figures'{figure_attrs(run)}>{' &middot; '.join(parts)}</span>"

    @staticmethod
    def figure(run, note=None):
        """The three live plots of ``run`` as a matplotlib Figure (``note``: a line written across it)."""
        steps, epochs = list(run.history["steps"]), list(run.history["epochs"])
        names = list(run.group_names)
        n = max(len(names), 1)
        fig = Figure(figsize=(12, max(3.3, 1.3 + 0.4 * n)), dpi=80, layout="constrained")
        left, middle, right = fig.subfigures(1, 3, width_ratios=[1.0, 0.85, 1.15])
        ax_loss, ax_metric = left.subplots(), middle.subplots()
        lr_axes = list(right.subplots(n, 1, sharex=True, sharey=True, squeeze=False)[:, 0])
        task = run.task

        ax_loss.set_title("loss")
        ax_loss.set_xlabel("optimizer step")
        ax_loss.set_ylabel(loss_label(task))
        if steps:
            ax_loss.plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=0.8, alpha=0.6,
                         color="#1f77b4", label="train (each step)")
        ends = _epoch_end_steps(steps, epochs)
        if epochs:
            ax_loss.plot(ends, [e["train_loss"] for e in epochs], "o-", color="#ff7f0e", label="train (epoch mean)")
            ax_loss.plot(ends, [e["val_loss"] for e in epochs], "s--", color="#2ca02c", label="validation")
        if steps or epochs:
            ax_loss.legend(fontsize=8)

        ax_metric.set_title("validation metrics")
        ax_metric.set_xlabel("epoch")
        numbers = [e["epoch"] + 1 for e in epochs]
        if task == "regression":
            ax_metric.set_ylabel("R² (1 = perfect)")
            if epochs and "val_r2" in epochs[0]:
                ax_metric.plot(numbers, [e["val_r2"] for e in epochs], "o-", label="R²")
        else:
            ax_metric.set_ylabel("score (0-1)")
            ax_metric.set_ylim(*ACCURACY_YLIM)
            for key, label, fmt in (("val_accuracy", "accuracy", "o-"), ("val_f1_macro", "F1 (macro)", "s--"),
                                    ("val_exact_match", "exact match", "^-"), ("val_f1", "F1 (SQuAD)", "d--"),
                                    ("val_map50", "mAP@0.5", "o-"), ("val_map", "mAP@[.5:.95]", "s--"),
                                    ("val_mean_iou", "mean IoU (matched)", "^:")):
                if epochs and key in epochs[0]:
                    ax_metric.plot(numbers, [e[key] for e in epochs], fmt, label=label)
        if epochs:
            ax_metric.set_xticks(numbers)
            ax_metric.legend(fontsize=8)
        else:
            ax_metric.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax_metric.set_xlim(0.5, max(run.config.epochs, 1) + 0.5)

        _draw_lrs(lr_axes, names, steps)
        right.supylabel("learning rate (log scale)", fontsize=10)
        lr_axes[0].set_title("learning rate of each group", fontsize=12)
        lr_axes[-1].set_xlabel("optimizer step  (grey = frozen)")

        for ax in (ax_loss, *lr_axes):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if run.total_steps:
                ax.set_xlim(-0.5, max(run.total_steps - 0.5, 1))
        if note:
            fig.text(0.5, 0.5, note, ha="center", va="center", fontsize=16, color="#333333",
                     bbox={"boxstyle": "round,pad=0.5", "facecolor": "white", "edgecolor": "#999999", "alpha": 0.95})
        return fig


def _draw_lrs(axes, names, steps):
    """One small panel per group: its LR on a log scale shared by all panels, frozen stretches shaded grey."""
    xs = [s["step"] for s in steps]
    first, last = (xs[0], xs[-1]) if xs else (0, 0)
    width = max(last - first + 1, 1)
    levels = []
    for g, ax in enumerate(axes):
        name = names[g] if g < len(names) else "?"
        st = style(g)
        values = [s["lrs"][g] for s in steps]
        trained = [v for v in gaps_at_zero(values) if v == v]   # NaN (frozen) dropped
        if trained:
            levels.append(max(trained))
        # the label: the group's name and its highest LR so far (so equal LRs read as equal at a glance)
        second = f"max {short_number(max(trained))}" if trained else ("frozen" if steps else "")
        ax.set_ylabel(f"{name}\n{second}".strip(), rotation=0, ha="right", va="center", fontsize=8,
                      color=st["color"], linespacing=1.1)
        ax.tick_params(labelsize=7)
        if not steps:
            ax.yaxis.set_major_locator(NullLocator())
            continue
        for a, b in frozen_spans(xs, values):
            ax.axvspan(a - 0.5, b + 0.5, color=FROZEN_COLOUR, alpha=0.9, lw=0)
            if b - a + 1 >= 0.15 * width:
                label = "frozen" if (a, b) != (first, last) else "frozen (every step)"
                ax.text((a + b) / 2, 0.5, label, transform=ax.get_xaxis_transform(), ha="center", va="center",
                        fontsize=7, color="#444444")
        every = max(1, len(xs) // 8)
        ax.plot(xs, gaps_at_zero(values), lw=1.5, ms=4, markevery=every, **st)
    # each group's own level (its highest LR) sets the scale: differential LRs sit apart on the shared log
    # axis; a schedule decaying far below the lowest level runs out of the bottom of its panel
    if levels:
        hi, lo = max(levels), min(levels)
        for ax in axes:
            ax.set_yscale("log")
        axes[0].set_ylim(lo / 30, hi * 2.5)
        ticks = [lo, hi] if lo < hi / 1.5 else [hi]   # the lowest and highest level, written on every panel
        for ax in axes:
            ax.yaxis.set_major_locator(FixedLocator(ticks))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: short_number(v)))
            ax.yaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        for ax in axes:
            ax.yaxis.set_major_locator(NullLocator())


def _scores(record):
    if "val_accuracy" in record:
        return f"val accuracy {record['val_accuracy']:.3f}, val loss {record['val_loss']:.4f}"
    if "val_r2" in record:
        return f"val R² {record['val_r2']:.3f}, val loss {record['val_loss']:.4f}"
    return f"val loss {record['val_loss']:.4f}"


def _epoch_end_steps(steps, epochs):
    """The step number at which each epoch ended (for drawing epoch values on the step axis)."""
    last = {}
    for s in steps:
        last[s["epoch"]] = s["step"]
    return [last.get(e["epoch"], 0) for e in epochs]
