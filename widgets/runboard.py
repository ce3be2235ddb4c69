"""RunBoard: every run of this kernel in one table and one overlay plot.

The table has one row per run (``ftkit.session_runs()``): strategy, key
settings, best validation metric, trainable parameters, wall time and status.
The plot overlays the validation loss and accuracy of every run per epoch, so
runs with different settings are easy to compare (accuracy on a fixed 0-1
scale, like the LiveView's). Runs can be renamed and hidden from the plot.
**Export CSV** writes the table to ``runs/ftkit_runs.csv`` (a git-ignored
folder) and offers it as a download link, which also works on Colab.

    board = RunBoard()
    display(board)
    ...                 # train some runs
    board.refresh()
    board.to_csv()      # runs/ftkit_runs.csv
    board.rename("run2", "lr 1e-4")
    board.hide("run1")  # off the plot; its row turns grey
"""
import base64
import csv
import html
import io
import os

import ipywidgets as widgets
from matplotlib.ticker import MaxNLocator

import ftkit

from ._plot import (ACCURACY_YLIM, figure_attrs, human, labelled, loss_label, message_png, new_figure, style, switch,
                    to_png)

# exports go to runs/ (git-ignored), never next to the notebook
DEFAULT_CSV = os.path.join("runs", "ftkit_runs.csv")
COLUMNS = ["run", "status", "framework", "model", "dataset", "strategy", "settings", "best_val_accuracy",
           "best_val_loss", "trainable_params", "epochs", "steps", "wall_time"]


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
    row.setdefault("steps", run.steps_done)
    return {k: row.get(k) for k in COLUMNS}


class RunBoard(widgets.VBox):
    """Every run of this kernel (or the ``runs`` you give) in a table and an overlay plot; export to CSV.

    ``rename(run_or_name, new_name)`` renames a run (``run.name``); ``hide(run_or_name)`` takes a run off
    the plot (its table row turns grey and says "hidden"), ``show(run_or_name)`` puts it back. The
    same actions have controls under the plot. Accuracy is drawn on a fixed 0-1 scale, the same as
    the LiveView's; ``zoom=True`` (or the "zoom accuracy" box) fits it to the data and says so.
    """

    def __init__(self, runs=None, csv_path=DEFAULT_CSV, zoom=False, **kwargs):
        self._runs = runs
        self.csv_path = csv_path
        self.zoom = zoom
        self._hidden = []          # the hidden Run objects (by identity, so a renamed run stays hidden)
        self._syncing = False
        self._boxes_key = None
        self.table = widgets.HTML()
        self.table.add_class("ftkit-runboard-table")
        self.plot = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.plot.add_class("ftkit-runboard-plot")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh",
                                             tooltip="Redraw the table and the plot from the runs as they are now")
        self.export_button = widgets.Button(description="Export CSV", icon="download",
                                            tooltip=f"Write the table to {csv_path} (a git-ignored folder) "
                                                    "and show a download link")
        self.export_note = widgets.HTML()
        self.zoom_box = switch("zoom accuracy", "Fit the accuracy axis to the runs' values instead of 0-1 (the plot "
                               "then says \"zoomed\"; small differences look large)", value=zoom)
        self.rename_choice = widgets.Dropdown(description="rename", layout=widgets.Layout(width="200px"),
                                              tooltip="The run to rename")
        self.rename_text = widgets.Text(placeholder="new name", layout=widgets.Layout(width="160px"),
                                        tooltip="The new name for the chosen run (shown in the table, the "
                                                "legend and the CSV)")
        self.rename_button = widgets.Button(description="Rename", icon="pencil", layout=widgets.Layout(width="90px"),
                                            tooltip="Give the chosen run the new name (sets run.name)")
        self.rename_note = widgets.HTML()
        self.show_boxes = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.show_boxes.add_class("ftkit-runboard-show")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.export_button.on_click(lambda _: self.export())
        self.rename_button.on_click(lambda _: self._rename_clicked())
        self.zoom_box.observe(self._zoom_changed, names="value")
        header = widgets.HTML("<b>RunBoard</b>: every run of this kernel")
        buttons = widgets.HBox([self.refresh_button, self.export_button, self.zoom_box, self.export_note],
                               layout=widgets.Layout(align_items="center"))
        rename = widgets.HBox([labelled(self.rename_choice, "55px"), self.rename_text, self.rename_button, self.rename_note],
                              layout=widgets.Layout(align_items="center"))
        shown = widgets.HBox([widgets.HTML("shown on the plot:&nbsp;"), self.show_boxes],
                             layout=widgets.Layout(align_items="center"))
        super().__init__([header, self.table, self.plot, shown, rename, buttons], **kwargs)
        self.add_class("ftkit-runboard")
        self.refresh()

    @property
    def runs(self):
        return list(self._runs) if self._runs is not None else ftkit.session_runs()

    @property
    def hidden(self):
        """The names of the hidden runs."""
        return [r.name for r in self.runs if self._is_hidden(r)]

    def visible_runs(self):
        """The runs the plot draws (every run that is not hidden)."""
        return [r for r in self.runs if not self._is_hidden(r)]

    def rows(self):
        """The table as a list of dicts, one per run."""
        return [run_row(r) for r in self.runs]

    def refresh(self):
        """Redraw the table, the plot and the controls from the runs as they are now."""
        self.export_note.value = ""   # a note about an earlier export is stale now
        runs = self.runs
        self.table.value = _table_html([run_row(r) for r in runs], [self._is_hidden(r) for r in runs], runs)
        visible = [r for r in runs if not self._is_hidden(r)]
        if any(r.history["epochs"] for r in visible):
            self.plot.value = to_png(self.figure(runs, zoom=self.zoom, hide=self._hidden))
        elif any(r.history["epochs"] for r in runs):
            self.plot.value = message_png("Every run with epochs is hidden: tick one under the plot.")
        else:
            self.plot.value = message_png("No finished epochs yet.")
        self._sync_controls(runs)

    # --- naming and hiding ----------------------------------------------------------------------------------
    def rename(self, run_or_name, new_name):
        """Rename a run (``run.name``); returns the Run. Names must be non-empty and unique on the board."""
        run = self._find(run_or_name)
        new_name = str(new_name).strip()
        if not new_name:
            raise ValueError("a run's new name must not be empty")
        if any(r.name == new_name and r is not run for r in self.runs):
            raise ValueError(f"there is already a run named {new_name!r}; choose another name")
        run.name = new_name
        self.refresh()
        return run

    def hide(self, run_or_name):
        """Take a run off the plot (its table row stays, greyed and marked "hidden")."""
        run = self._find(run_or_name)
        if not self._is_hidden(run):
            self._hidden.append(run)
        self.refresh()

    def show(self, run_or_name):
        """Put a hidden run back on the plot."""
        run = self._find(run_or_name)
        self._hidden = [r for r in self._hidden if r is not run]
        self.refresh()

    def _is_hidden(self, run):
        return any(r is run for r in self._hidden)

    def _find(self, run_or_name):
        runs = self.runs
        if isinstance(run_or_name, str):
            found = [r for r in runs if r.name == run_or_name]
            if not found:
                raise KeyError(f"no run named {run_or_name!r} on the board (runs: {[r.name for r in runs]})")
            return found[-1]
        if any(r is run_or_name for r in runs):
            return run_or_name
        raise KeyError(f"{run_or_name!r} is not a run on this board")

    def _sync_controls(self, runs):
        self._syncing = True
        try:
            names = [r.name for r in runs]
            if list(self.rename_choice.options) != names:
                chosen = self.rename_choice.value
                self.rename_choice.options = names
                self.rename_choice.value = chosen if chosen in names else (names[-1] if names else None)
            key = [(id(r), r.name) for r in runs]
            if key != self._boxes_key:   # new runs or new names: one checkbox per run, built again
                for box in self.show_boxes.children:
                    box.close()
                self.show_boxes.children = [self._show_box(r) for r in runs]
                self._boxes_key = key
            for box, run in zip(self.show_boxes.children, runs):
                box.value = not self._is_hidden(run)
        finally:
            self._syncing = False

    def _show_box(self, run):
        box = switch(run.name, f"Untick to hide {run.name} from the plot (its table row turns grey); tick to show "
                     "it again", value=not self._is_hidden(run), margin="0 12px 0 0")
        box.observe(lambda ch: self._box_changed(run, ch["new"]), names="value")
        return box

    def _box_changed(self, run, shown):
        if not self._syncing:
            (self.show if shown else self.hide)(run)

    def _rename_clicked(self):
        try:
            run = self.rename(self.rename_choice.value, self.rename_text.value)
        except (KeyError, ValueError) as e:
            self.rename_note.value = f"<span style='color:#b71c1c'>{html.escape(str(e.args[0]))}</span>"
            return
        self.rename_text.value = ""
        self.rename_choice.value = run.name
        self.rename_note.value = f"renamed to <b>{html.escape(run.name)}</b>"

    def _zoom_changed(self, change):
        self.zoom = change["new"]
        self.refresh()

    # --- plot and export ------------------------------------------------------------------------------------
    @staticmethod
    def figure(runs, zoom=False, hide=()):
        """Validation loss and accuracy per epoch, one line per run (accuracy on 0-1 unless ``zoom``).

        Runs in ``hide`` are left out; the others keep the colour and marker of their place in ``runs``,
        so hiding a run never repaints the rest.
        """
        fig, (ax_loss, ax_acc) = new_figure(10, 3.0, ncols=2)
        ax_loss.set_title("validation loss")
        ax_acc.set_title("validation accuracy (zoomed)" if zoom else "validation accuracy")
        tasks = set()
        for i, run in enumerate(runs):
            eps = run.history["epochs"]
            if not eps or any(run is h for h in hide):
                continue
            tasks.add(run.task)
            x = [e["epoch"] + 1 for e in eps]
            label = f"{run.name} ({run.framework}, {run.config.strategy})"
            st = style(i)
            ax_loss.plot(x, [e["val_loss"] for e in eps], ms=5, label=label, **st)
            if "val_accuracy" in eps[0]:
                ax_acc.plot(x, [e["val_accuracy"] for e in eps], ms=5, label=label, **st)
        ax_loss.set_ylabel(loss_label(tasks.pop()) if len(tasks) == 1 else "loss")
        ax_acc.set_ylabel("accuracy (0-1)" if not zoom else "accuracy (zoomed)")
        if not zoom:
            ax_acc.set_ylim(*ACCURACY_YLIM)
        for ax in (ax_loss, ax_acc):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.lines:
                ax.legend(fontsize=8)
        return fig

    def to_csv(self, path=None):
        """Write the table to ``path`` (default ``csv_path``, under ``runs/``) and return the absolute path."""
        path = path or self.csv_path
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
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


_CELL = "padding:2px 6px;vertical-align:top"
_WRAP = "max-width:18em;white-space:normal;overflow-wrap:anywhere"   # the settings column wraps
_WRAPPING = {"run", "model", "dataset", "strategy", "settings"}


def _table_html(rows, hidden=None, runs=None):
    if not rows:
        return "<p class='ftkit-runboard-empty'>No runs yet: press Train.</p>"
    hidden = hidden or [False] * len(rows)
    runs = runs or [None] * len(rows)
    head = "".join(f"<th style='{_CELL};text-align:left'>{k.replace('_', ' ')}</th>" for k in COLUMNS)
    body = []
    for row, off, run in zip(rows, hidden, runs):
        cells = []
        for k in COLUMNS:
            text = html.escape(_fmt(k, row[k]))
            if k == "run" and off:
                text += " <i>(hidden)</i>"
            cells.append(f"<td style='{_CELL};{_WRAP if k in _WRAPPING else 'white-space:nowrap'}' "
                         f"data-col='{k}'>{text}</td>")
        grey = " style='color:#9a9a9a'" if off else ""
        figures = figure_attrs(run) if run is not None else ""
        body.append(f"<tr data-run='{html.escape(str(row['run']))}' data-status='{row['status']}' "
                    f"data-hidden='{str(off).lower()}'{figures}{grey}>{''.join(cells)}</tr>")
    # text columns may wrap, so the table fits a notebook's width; a very narrow one scrolls sideways
    return ("<div style='max-width:100%;overflow-x:auto'><table style='border-collapse:collapse;font-size:12px'>"
            f"<thead><tr style='border-bottom:1px solid #999'>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")
