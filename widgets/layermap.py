"""LayerMap: the model's layer groups as a row of clickable blocks.

Each block is one layer group (input on the left, the new head on the right)
with its name, its parameter count, whether it is frozen or trainable, and its
learning-rate multiplier (its LR divided by the base LR). Clicking a block asks
to freeze or unfreeze it.

It is an anywidget: the front-end code is the small JavaScript module
``static/layermap.js`` (and ``static/layermap.css``), loaded as it is (no build step). On Colab run
``from google.colab import output; output.enable_custom_widget_manager()``
once before showing it.

Used alone, ``LayerMap(model)`` toggles the clicked group on the model
(``model.set_trainable``). Inside a FineTunePanel, the panel handles the click
and edits its config instead (see ``FineTunePanel._block_clicked``).
"""
from pathlib import Path

import anywidget
import traitlets

from ._plot import human

# The front end: a small ES module and its style sheet, shipped in the package (static/) and loaded as they are.
STATIC = Path(__file__).parent / "static"
ESM = STATIC / "layermap.js"
CSS = STATIC / "layermap.css"


class LayerMap(anywidget.AnyWidget):
    """The layer groups of a model as blocks, coloured frozen/trainable; click to freeze or unfreeze.

    ``LayerMap(model)`` shows ``model``'s groups and toggles them on click.
    ``layermap.on_click(fn)`` replaces that: ``fn(index)`` is called instead.
    ``layermap.click(i)`` does from Python what a click in the browser does.
    """

    _esm = ESM.read_text()
    _css = CSS.read_text()
    groups = traitlets.List(traitlets.Dict()).tag(sync=True)
    caption = traitlets.Unicode("").tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)

    def __init__(self, model=None, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self._handlers = []
        self.on_msg(self._on_custom_msg)
        if model is not None:
            self.show_model(model)

    # --- what is shown -------------------------------------------------------------------------------
    def show(self, names, params, mask, lr_mults=None, notes=None, caption=None):
        """Draw one block per group: ``names``, ``params`` (counts), ``mask`` (True = trainable)."""
        n = len(names)
        lr_mults = list(lr_mults) if lr_mults is not None else [1.0] * n
        notes = list(notes) if notes is not None else [""] * n
        self.groups = [{"name": str(name), "params": int(p or 0), "params_text": human(p),
                        "trainable": bool(t), "lr_mult": m,
                        "lr_text": _lr_text(t, m),
                        "note": note}
                       for name, p, t, m, note in zip(names, params, mask, lr_mults, notes)]
        if caption is not None:
            self.caption = caption

    def show_model(self, model, lr_mults=None, caption=None):
        """Show ``model``'s groups with their current frozen/trainable state."""
        self.model = model
        mask = model.trainable_mask()
        if caption is None:
            caption = (f"{model.name}: {sum(mask)} of {len(mask)} groups trainable. "
                       "Click a block to freeze or unfreeze it.")
        self.show(model.group_names, model.param_counts(), mask, lr_mults, caption=caption)

    def show_message(self, text):
        """No blocks, only a line of text (for example before a model is loaded)."""
        self.groups = []
        self.caption = text

    @property
    def mask(self):
        """What the blocks show: True for each trainable group."""
        return [g["trainable"] for g in self.groups]

    # --- clicks ----------------------------------------------------------------------------------------
    def on_click(self, fn):
        """Call ``fn(index)`` when a block is clicked (instead of toggling the model directly)."""
        self._handlers.append(fn)

    def click(self, index):
        """Do what clicking block ``index`` in the browser does."""
        if self.disabled:
            return
        if not 0 <= index < len(self.groups):
            raise IndexError(f"block {index} does not exist; there are {len(self.groups)} groups")
        if self._handlers:
            for fn in self._handlers:
                fn(index)
        elif self.model is not None:
            mask = self.model.trainable_mask()
            mask[index] = not mask[index]
            self.model.set_trainable(mask)
            self.show_model(self.model)

    def _on_custom_msg(self, widget, content, buffers):
        if isinstance(content, dict) and content.get("type") == "click":
            self.click(int(content["index"]))


def _lr_text(trainable, mult):
    if not trainable:
        return "no updates"
    return "LR x ?" if mult is None else f"LR x {mult:.3g}"
