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
# colour plus marker plus line style, so two series can be told apart without colour too
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
LINESTYLES = ["-", "--", "-.", ":"]
ACCURACY_YLIM = (0.0, 1.02)   # every accuracy/score axis: the same 0-1 scale on the LiveView and the RunBoard
FROZEN_COLOUR = "#d4d4d4"


def style(i):
    """Colour, marker and line style of the i-th series (group or run)."""
    return {"color": GROUP_COLOURS[i % len(GROUP_COLOURS)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[i % len(LINESTYLES)]}


def loss_label(task):
    """The y label of a loss axis: what the loss is."""
    return {"regression": "loss (MSE)", "qa": "loss (start and end cross-entropy)",
            "detection": "loss (focal + box regression)"}.get(task, "loss (cross-entropy)")


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


def figure_attrs(run):
    """The run's key figures as HTML data attributes (epochs done, steps done, best val accuracy), the same
    on the panel's status line, the LiveView's stats line and the RunBoard's row, so tests can compare them."""
    best = run.best_epoch or {}
    acc = best.get("val_accuracy")
    return (f" data-epochs='{len(run.history['epochs'])}' data-steps='{run.steps_done}'"
            f" data-best-accuracy='{'' if acc is None else f'{acc:.3f}'}'")


def frozen_spans(xs, values):
    """[(first x, last x), ...] of each stretch where ``values`` is 0 (the group was frozen)."""
    spans, start, prev = [], None, None
    for x, v in zip(xs, values):
        frozen = not (v and v > 0 and math.isfinite(v))
        if frozen and start is None:
            start = x
        if not frozen and start is not None:
            spans.append((start, prev))
            start = None
        prev = x
    if start is not None:
        spans.append((start, prev))
    return spans


def short_number(v):
    """0.001 -> '1e-3', 0.00025 -> '2.5e-4', 0.5 -> '0.5' (LR tick labels)."""
    if not v or not math.isfinite(v):
        return "0"
    if 0.01 <= abs(v) < 1000:
        return f"{v:.2g}"
    mantissa, exponent = f"{v:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


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


def switch(description, tooltip, value=False, **layout):
    """An on/off control that shows its tooltip on hover (an ipywidgets ToggleButton with a tick).

    ipywidgets' Checkbox shows its own label as the hover text, never its tooltip, so the widgets use this.
    """
    import ipywidgets as widgets
    button = widgets.ToggleButton(value=value, description=description, tooltip=tooltip,
                                  icon="check" if value else "", layout=widgets.Layout(width="auto", **layout))
    button.observe(lambda ch: setattr(button, "icon", "check" if ch["new"] else ""), names="value")
    return button


def labelled(widget, width="130px"):
    """``widget`` with its description moved into a label beside it, the tooltip on both.

    ipywidgets 8 shows a described Dropdown's or slider's tooltip nowhere (and a described text box's on its
    label only, as "null" when unset); a widget without a description carries its tooltip itself. So the
    description becomes a label with the same tooltip, and the widget loses it.
    """
    import html
    import ipywidgets as widgets
    text, tip = widget.description, widget.tooltip or ""
    if not text:
        return widget
    widget.description = ""
    w = widget.layout.width
    if w and w.endswith("px"):   # the old width held the description too
        widget.layout.width = f"{max(60, int(w[:-2]) - int(width[:-2]))}px"
    label = widgets.HTML(f"<span title='{html.escape(tip, quote=True)}' style='display:inline-block;"
                         f"width:{width};overflow:hidden;text-overflow:ellipsis'>{html.escape(text)}</span>",
                         layout=widgets.Layout(width=width, flex="0 0 auto"))
    label.add_class("ftkit-label")
    return widgets.HBox([label, widget], layout=widgets.Layout(align_items="center", overflow="hidden"))
