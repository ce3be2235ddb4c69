"""LiveView: watch a run while it trains.

Three plots, redrawn while the run goes: the loss of every step (with each
epoch's train and validation loss), the validation metrics of each epoch, and
the learning rate of each layer group (a gap means that group was frozen).
A line under them gives the step, samples per second and the time left.

A LiveView is also an ``ftkit.Callback``, so it works without the panel::

    live = LiveView()
    display(live)
    run = ftkit.finetune(model, data, config, callbacks=[live])

Redraws are throttled (at most one every ``min_interval`` seconds, plus one at
the end of every epoch and of the run), so drawing never slows training much.
"""
import html
import threading
import time

import ipywidgets as widgets
from matplotlib.ticker import MaxNLocator

import ftkit

from ._plot import GROUP_COLOURS, duration, gaps_at_zero, message_png, new_figure, to_png


class LiveView(widgets.VBox, ftkit.Callback):
    """Live plots of one run: loss per step, metrics per epoch, LR per group; samples/s and time left."""

    def __init__(self, min_interval=0.75, **kwargs):
        self.title = widgets.HTML("<b>Live view</b>: no run yet.")
        self.title.add_class("ftkit-live-title")
        self.plot = widgets.Image(format="png", value=message_png("Press Train to see the loss, metrics and LRs."),
                                  layout=widgets.Layout(max_width="100%"))
        self.plot.add_class("ftkit-live-plot")
        self.stats = widgets.HTML("")
        self.stats.add_class("ftkit-live-stats")
        super().__init__([self.title, self.plot, self.stats], **kwargs)
        self.add_class("ftkit-live")
        self.min_interval = min_interval
        self.run = None
        self.redraws = 0          # how many times the plot was drawn (tests look at it)
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._t0 = None
        self._head = ""

    # --- ftkit.Callback ----------------------------------------------------------------------------------
    def on_train_begin(self, run):
        self.run = run
        self._t0 = time.perf_counter()
        self._last_draw = 0.0
        c = run.config
        self._head = (f"<b>{html.escape(run.name)}</b>: {run.model_name} ({run.framework}) on {run.dataset_name}, "
                      f"strategy <b>{c.strategy}</b>, LR {c.lr:g}, {c.schedule} schedule, {c.epochs} epochs")
        self._set_status("running")
        self.stats.value = "starting..."

    def on_step_end(self, run, record):
        if time.perf_counter() - self._last_draw >= self.min_interval:
            self.redraw()

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
    def redraw(self):
        """Draw the plots and the stats line from ``self.run``'s history now."""
        run = self.run
        if run is None:
            return
        with self._lock:  # the training thread and a Refresh click may both draw
            self._last_draw = time.perf_counter()
            self.plot.value = to_png(self.figure(run))
            self.stats.value = self._stats_text(run)
            self.redraws += 1

    @staticmethod
    def figure(run):
        """The three live plots of ``run`` as a matplotlib Figure."""
        steps, epochs = list(run.history["steps"]), list(run.history["epochs"])
        fig, (ax_loss, ax_metric, ax_lr) = new_figure(12, 3.0, ncols=3)
        ax_loss.set_title("loss")
        ax_loss.set_xlabel("step")
        if steps:
            ax_loss.plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=0.8, alpha=0.6,
                         label="train (each step)")
        ends = _epoch_end_steps(steps, epochs)
        if epochs:
            ax_loss.plot(ends, [e["train_loss"] for e in epochs], "o-", label="train (epoch mean)")
            ax_loss.plot(ends, [e["val_loss"] for e in epochs], "s-", label="validation")
        if steps or epochs:
            ax_loss.legend(fontsize=8)

        ax_metric.set_title("validation metrics")
        ax_metric.set_xlabel("epoch")
        ax_metric.set_ylim(0, 1.02)
        numbers = [e["epoch"] + 1 for e in epochs]
        for key, label in (("val_accuracy", "accuracy"), ("val_f1_macro", "F1 (macro)")):
            if epochs and key in epochs[0]:
                ax_metric.plot(numbers, [e[key] for e in epochs], "o-", label=label)
        if epochs:
            ax_metric.set_xticks(numbers)
            ax_metric.legend(fontsize=8)

        ax_lr.set_title("learning rate of each group")
        ax_lr.set_xlabel("step")
        if steps:
            xs = [s["step"] for s in steps]
            for g, name in enumerate(run.group_names):
                ys = gaps_at_zero([s["lrs"][g] for s in steps])
                ax_lr.plot(xs, ys, color=GROUP_COLOURS[g % len(GROUP_COLOURS)], label=name)
            if any(v > 0 for s in steps for v in s["lrs"]):
                ax_lr.set_yscale("log")
            ax_lr.legend(fontsize=7, title="gap = frozen", title_fontsize=7, loc="center left",
                         bbox_to_anchor=(1.0, 0.5))
        for ax in (ax_loss, ax_lr):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if run.total_steps:
                ax.set_xlim(-0.5, max(run.total_steps - 0.5, 1))
        return fig

    def _stats_text(self, run):
        steps = run.history["steps"]
        done, total = len(steps), run.total_steps or 0
        parts = [f"step {done}/{total}"]
        epochs = run.history["epochs"]
        if epochs:
            e = epochs[-1]
            parts.append(f"epoch {e['epoch'] + 1}/{run.config.epochs}")
            parts.append(f"{e['samples_per_sec']:.1f} samples/s")
            if "val_accuracy" in e:
                parts.append(f"val accuracy {e['val_accuracy']:.3f}")
        elapsed = time.perf_counter() - self._t0 if self._t0 else 0.0
        parts.append(f"elapsed {duration(elapsed)}")
        if run.status == "running" and done:
            parts.append(f"about {duration(elapsed / done * (total - done))} left")
        return " &middot; ".join(parts)


def _epoch_end_steps(steps, epochs):
    """The step number at which each epoch ended (for drawing epoch values on the step axis)."""
    last = {}
    for s in steps:
        last[s["epoch"]] = s["step"]
    return [last.get(e["epoch"], 0) for e in epochs]
