"""Small helpers shared by the widgets: matplotlib figures rendered to PNG bytes.

The widgets draw with ``matplotlib.figure.Figure`` directly (not ``pyplot``),
so drawing from the training thread never touches the notebook's own figures,
and show the PNG in an ``ipywidgets.Image``. Setting an Image's value is a
plain widget update, safe to do from a background thread.
"""
import io
import math

from matplotlib.figure import Figure

GROUP_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]


def new_figure(width, height, ncols=1):
    fig = Figure(figsize=(width, height), dpi=80, layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def to_png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def message_png(text, width=6.0, height=1.2):
    """A small picture holding one line of text (shown where a plot cannot be drawn)."""
    fig = Figure(figsize=(width, height), dpi=80)  # no constrained layout: there are no axes to lay out
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11, color="#555555")
    return to_png(fig)


def gaps_at_zero(values):
    """Replace 0 by NaN so a log-scale line shows a gap where a group was frozen."""
    return [v if v and v > 0 and math.isfinite(v) else float("nan") for v in values]


def human(n):
    """2236682 -> '2.24M' (parameter counts)."""
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def duration(seconds):
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
