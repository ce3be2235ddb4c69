"""LayerMap: the model's layer groups as a row of clickable blocks.

Each block is one layer group (input on the left, the new head on the right)
with its name, its parameter count, whether it is frozen or trainable, and its
learning-rate multiplier (its LR divided by the base LR). Clicking a block asks
to freeze or unfreeze it.

It is an anywidget: the front-end code is the small JavaScript module in
``_esm`` below, loaded as it is (no build step). On Colab run
``from google.colab import output; output.enable_custom_widget_manager()``
once before showing it.

Used alone, ``LayerMap(model)`` toggles the clicked group on the model
(``model.set_trainable``). Inside a FineTunePanel, the panel handles the click
and edits its config instead (see ``FineTunePanel._block_clicked``).
"""
import anywidget
import traitlets

from ._plot import human

_ESM = r"""
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "ftkit-layermap";
  el.appendChild(root);

  function text(tag, cls, value) {
    const node = document.createElement(tag);
    node.className = cls;
    node.textContent = value;
    return node;
  }

  function draw() {
    const groups = model.get("groups");
    const disabled = model.get("disabled");
    root.replaceChildren();
    const row = document.createElement("div");
    row.className = "ftkit-layermap-row";
    row.appendChild(text("div", "ftkit-layermap-end", "input"));
    groups.forEach((g, i) => {
      const block = document.createElement("button");
      block.className = "ftkit-block " + (g.trainable ? "ftkit-trainable" : "ftkit-frozen");
      block.dataset.index = String(i);
      block.dataset.state = g.trainable ? "trainable" : "frozen";
      block.disabled = disabled;
      block.style.flexGrow = String(Math.max(1, Math.log10(10 + g.params)));
      block.title = (g.trainable ? "Click to freeze " : "Click to unfreeze ") + g.name;
      block.appendChild(text("div", "ftkit-block-name", g.name));
      block.appendChild(text("div", "ftkit-block-params", g.params_text + " params"));
      block.appendChild(text("div", "ftkit-block-state", g.trainable ? "trainable" : "frozen"));
      block.appendChild(text("div", "ftkit-block-lr", g.lr_text));
      if (g.note) block.appendChild(text("div", "ftkit-block-note", g.note));
      block.addEventListener("click", () => model.send({ type: "click", index: i }));
      row.appendChild(block);
    });
    row.appendChild(text("div", "ftkit-layermap-end", "output"));
    root.appendChild(row);
    root.appendChild(text("div", "ftkit-layermap-caption", model.get("caption")));
  }

  model.on("change:groups", draw);
  model.on("change:disabled", draw);
  model.on("change:caption", draw);
  draw();
  return () => {
    model.off("change:groups", draw);
    model.off("change:disabled", draw);
    model.off("change:caption", draw);
  };
}
export default { render };
"""

_CSS = """
.ftkit-layermap { font-family: var(--jp-ui-font-family, sans-serif); font-size: 12px; margin: 4px 0; }
.ftkit-layermap-row { display: flex; align-items: stretch; gap: 4px; }
.ftkit-layermap-end { align-self: center; color: #777; font-style: italic; padding: 0 4px; }
.ftkit-block { flex-basis: 0; min-width: 84px; border-radius: 6px; padding: 4px 6px; cursor: pointer;
               text-align: left; font: inherit; border: 2px solid; }
.ftkit-block:disabled { cursor: not-allowed; opacity: 0.75; }
.ftkit-trainable { background: #e3f4e4; border-color: #2e7d32; color: #1b4d1e; }
.ftkit-frozen { background: #e6ecf5; border-color: #8aa1c1; color: #3a4a60; }
.ftkit-block-name { font-weight: bold; }
.ftkit-block-state { text-transform: uppercase; font-size: 10px; letter-spacing: 0.05em; }
.ftkit-block-note { font-size: 10px; color: #9a5b00; }
.ftkit-layermap-caption { color: #555; margin-top: 3px; }
"""


class LayerMap(anywidget.AnyWidget):
    """The layer groups of a model as blocks, coloured frozen/trainable; click to freeze or unfreeze.

    ``LayerMap(model)`` shows ``model``'s groups and toggles them on click.
    ``layermap.on_click(fn)`` replaces that: ``fn(index)`` is called instead.
    ``layermap.click(i)`` does from Python what a click in the browser does.
    """

    _esm = _ESM
    _css = _CSS
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
