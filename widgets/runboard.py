"""RunBoard: every run of this kernel in one table and one overlay plot.

The table has one row per run (``ftkit.session_runs()``): strategy, key
settings, best validation metric, trainable parameters, wall time and status.
The plot overlays the validation loss and accuracy of every run per epoch, so
runs with different settings are easy to compare. **Export CSV** writes the
table to a file (and offers it as a download link, which also works on Colab).

    board = RunBoard()
    display(board)
    ...                 # train some runs
    board.refresh()
    board.to_csv("runs.csv")
"""
import base64
import csv
import html
import io
import os

import ipywidgets as widgets
from matplotlib.ticker import MaxNLocator

import ftkit

from ._plot import GROUP_COLOURS, human, message_png, new_figure, to_png

COLUMNS = ["run", "status", "framework", "model", "dataset", "strategy", "settings", "best_val_accuracy",
           "best_val_loss", "trainable_params", "epochs", "wall_time"]


def settings_text(config):
    """The settings that tell runs apart, in a few words."""
    parts = [f"lr {config.lr:g}"]
    if config.lr_ratio:
        parts.append(f"ratio {config.lr_ratio:g}")
    if config.group_lrs:
        parts.append("per-group LRs")
    if config.strategy == "partial":
        parts.append(f"last {config.trainable_groups} groups")
    if config.strategy == "progressive":
        parts.append(f"unfreeze every {config.unfreeze_every}")
    parts.append(config.schedule)
    if config.warmup_steps:
        parts.append(f"warmup {config.warmup_steps}")
    parts.append(f"bs {config.batch_size}")
    parts.append(f"wd {config.weight_decay:g}")
    if config.augment:
        parts.append("augment")
    return ", ".join(parts)


def run_row(run):
    """One table row (a flat dict) for ``run``."""
    row = dict(run.summary())
    row["settings"] = settings_text(run.config)
    return {k: row.get(k) for k in COLUMNS}


class RunBoard(widgets.VBox):
    """Every run of this kernel (or the ``runs`` you give) in a table and an overlay plot; export to CSV."""

    def __init__(self, runs=None, csv_path="ftkit_runs.csv", **kwargs):
        self._runs = runs
        self.csv_path = csv_path
        self.table = widgets.HTML()
        self.table.add_class("ftkit-runboard-table")
        self.plot = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.plot.add_class("ftkit-runboard-plot")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.export_button = widgets.Button(description="Export CSV", icon="download")
        self.export_note = widgets.HTML()
        self.refresh_button.on_click(lambda _: self.refresh())
        self.export_button.on_click(lambda _: self.export())
        header = widgets.HTML("<b>RunBoard</b>: every run of this kernel")
        buttons = widgets.HBox([self.refresh_button, self.export_button, self.export_note])
        super().__init__([header, self.table, self.plot, buttons], **kwargs)
        self.add_class("ftkit-runboard")
        self.refresh()

    @property
    def runs(self):
        return list(self._runs) if self._runs is not None else ftkit.session_runs()

    def rows(self):
        """The table as a list of dicts, one per run."""
        return [run_row(r) for r in self.runs]

    def refresh(self):
        """Redraw the table and the plot from the runs as they are now."""
        runs = self.runs
        self.table.value = _table_html([run_row(r) for r in runs])
        if any(r.history["epochs"] for r in runs):
            self.plot.value = to_png(self.figure(runs))
        else:
            self.plot.value = message_png("No finished epochs yet.")

    @staticmethod
    def figure(runs):
        """Validation loss and accuracy per epoch, one line per run."""
        fig, (ax_loss, ax_acc) = new_figure(10, 2.8, ncols=2)
        ax_loss.set_title("validation loss")
        ax_acc.set_title("validation accuracy")
        for i, run in enumerate(runs):
            eps = run.history["epochs"]
            if not eps:
                continue
            x = [e["epoch"] + 1 for e in eps]
            colour = GROUP_COLOURS[i % len(GROUP_COLOURS)]
            label = f"{run.name} ({run.config.strategy})"
            ax_loss.plot(x, [e["val_loss"] for e in eps], "o-", color=colour, label=label)
            if "val_accuracy" in eps[0]:
                ax_acc.plot(x, [e["val_accuracy"] for e in eps], "o-", color=colour, label=label)
        for ax in (ax_loss, ax_acc):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.lines:
                ax.legend(fontsize=8)
        return fig

    def to_csv(self, path=None):
        """Write the table to ``path`` (default ``csv_path``) and return the path."""
        path = path or self.csv_path
        with open(path, "w", newline="") as f:
            f.write(self._csv_text())
        return os.path.abspath(path)

    def to_dataframe(self):
        import pandas as pd
        return pd.DataFrame(self.rows(), columns=COLUMNS)

    def export(self):
        """What the Export CSV button does: write the file and show a download link."""
        text = self._csv_text()
        path = self.to_csv()
        data = base64.b64encode(text.encode()).decode()
        name = html.escape(os.path.basename(path))
        self.export_note.value = (f"wrote <code>{html.escape(path)}</code> &middot; "
                                  f"<a download='{name}' href='data:text/csv;base64,{data}'>download</a>")
        return path

    def _csv_text(self):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows())
        return buf.getvalue()


def _fmt(key, value):
    if value is None:
        return "-"
    if key == "trainable_params":
        return human(value)
    if key == "wall_time":
        return f"{value:.1f} s"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table_html(rows):
    if not rows:
        return "<p class='ftkit-runboard-empty'>No runs yet: press Train.</p>"
    head = "".join(f"<th style='padding:2px 6px;text-align:left'>{k.replace('_', ' ')}</th>" for k in COLUMNS)
    body = []
    for row in rows:
        cells = "".join(f"<td style='padding:2px 6px' data-col='{k}'>{html.escape(_fmt(k, row[k]))}</td>"
                        for k in COLUMNS)
        body.append(f"<tr data-run='{html.escape(str(row['run']))}' data-status='{row['status']}'>{cells}</tr>")
    return ("<table style='border-collapse:collapse;font-size:12px'>"
            f"<thead><tr style='border-bottom:1px solid #999'>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")
