// LayerMap's front end (an anywidget ES module, loaded as it is: no build step).
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
