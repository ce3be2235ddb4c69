"""FineTunePanel: choose the settings of a fine-tuning run with controls, press Train, watch it learn.

    from ftkit_widgets import FineTunePanel
    panel = FineTunePanel(model="mobilenet_v2", dataset="fashion_mnist", subset=50)
    panel                      # shows the controls, the layer map, the live view and the run board

Everything the controls set is one ``ftkit.FineTuneConfig`` (``panel.config``);
``panel.code()`` prints the plain ftkit calls that do the same run without the
panel, and ``FineTunePanel.from_config(config)`` goes the other way.

How it works, in short:

* **Train** builds the config from the controls, checks it (a bad value, such
  as a learning rate of 0, is reported in the panel in plain words) and starts
  ``ftkit.finetune`` in a background thread, so the notebook stays responsive.
  While the run goes the controls are disabled, and a second Train click does
  nothing.
* **Stop** calls ``run.request_stop()``: the run ends after the current step,
  keeping its history and its last weights (the status line says so).
* **LR finder** runs ``ftkit.lr_find`` and offers its suggestion; **Evaluate on
  test** shows the test metrics, the confusion matrix and a few predictions.
* Every control has a tooltip; an error about a setting shows under that control
  as well as in the status line. Less-used settings sit in tabs, so the first
  screen holds the main settings, Train/Stop, the status line and the live plots.
* The panel's callback and the LiveView (also an ``ftkit.Callback``) update the
  plots from the training thread.

For tests and scripts the same actions are methods: ``panel.train(wait=True)``,
``panel.stop()``, ``panel.load()``, ``panel.layermap.click(i)``; ``panel.run``
is the latest run and ``panel.thread`` the worker thread.
"""
import html
import re
import threading
import traceback

import ipywidgets as widgets
from ipywidgets.widgets.widget_description import DescriptionWidget
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import ftkit
from ftkit.config import OPTIMIZERS, PRECISIONS
from ftkit.strategies import plan, rule_text
from ftkit.training import steps_per_epoch

from ._plot import GROUP_COLOURS, duration, gaps_at_zero, labelled, message_png, new_figure, switch, to_png
from .layermap import LayerMap
from .live import LiveView
from .runboard import RunBoard

IMAGE_SIZES = [32, 64, 96, 128, 160, 224]
BATCH_SIZES = [8, 16, 32, 64, 128, 256]
_DEFAULT = ftkit.FineTuneConfig()
def _field_of(message):
    """The config field a ConfigError message starts with ("lr=0 must be..." -> "lr"), or None."""
    m = re.match(r"(\w+)(=| has )", message)
    return m.group(1) if m else None


def run_summary_html(run):
    """The status line after a run, every figure from the run record."""
    best = run.best_epoch
    parts = [f"<b>{html.escape(run.name)}</b> {run.status}: {len(run.history['epochs'])} epoch(s), "
             f"{run.steps_done} of {run.total_steps} steps in {duration(run.elapsed)}."]
    if best is not None and best.get("val_accuracy") is not None:
        parts.append(f"Best epoch {best['epoch'] + 1} (by {run.config.monitor}): val accuracy "
                     f"{best['val_accuracy']:.3f}.")
    if run.message:
        parts.append(html.escape(run.message[0].upper() + run.message[1:]) + ".")
    return " ".join(parts)


def evaluation_figure(data, metrics, scores, title="", n_examples=6):
    """The confusion matrix and a few test predictions (images, or text snippets), as one Figure."""
    import numpy as np
    y = np.asarray(data.test.y)
    pred = np.asarray(scores).argmax(1)
    names = data.class_names or [str(i) for i in range(scores.shape[1])]
    is_image = data.modality == "image"
    fig = Figure(figsize=(11, 3.6), dpi=80, layout="constrained")
    grid = fig.add_gridspec(2, 1 + (n_examples + 1) // 2, width_ratios=[2.2] + [1] * ((n_examples + 1) // 2))
    ax = fig.add_subplot(grid[:, 0])
    cm = np.asarray(metrics["confusion_matrix"])
    ax.imshow(cm, cmap="Blues")
    ax.set(xlabel="predicted class", ylabel="true class", title=f"confusion matrix, accuracy "
           f"{metrics['accuracy']:.3f}")
    ax.set_xticks(range(len(names)), [n[:8] for n in names], rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), [n[:8] for n in names], fontsize=7)
    # a few predictions: the first test examples, wrong ones first
    order = np.argsort(pred == y, kind="stable")[:n_examples]
    for k, i in enumerate(order):
        a = fig.add_subplot(grid[k % 2, 1 + k // 2])
        ok = pred[i] == y[i]
        if is_image:
            img = np.asarray(data.test.x[i], dtype=np.float32)
            a.imshow(img.squeeze(), cmap="gray" if img.ndim == 2 or img.shape[-1] == 1 else None)
        else:
            a.text(0.02, 0.5, str(data.test.x[i])[:90], wrap=True, fontsize=7, va="center")
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(f"pred {names[pred[i]][:10]}\ntrue {names[y[i]][:10]}", fontsize=7,
                    color="#1b5e20" if ok else "#b71c1c")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


EVALUATION_KEYS = ("accuracy", "f1_macro", "r2", "rmse", "exact_match", "f1", "map50", "map", "mean_iou", "loss")


def detection_figure(data, metrics, predictions, title="", n_examples=8):
    """Test images with their true and predicted boxes (ftkit.show_detections), titled with the mAP."""
    n = min(n_examples, len(data.test))
    fig = ftkit.show_detections(data.test.x[:n], truth=data.test.y[:n], predictions=predictions[:n],
                                class_names=data.class_names)
    fig.suptitle(f"{title}: mAP@0.5 {metrics['map50']:.3f}, mAP@[.5:.95] {metrics['map']:.3f}", fontsize=10)
    return fig


def answers_figure(data, metrics, answers, title="", n_examples=6):
    """A few test questions with the predicted and the true answers, wrong ones first, titled with EM and F1."""
    from ftkit.tasks.qa import exact_match
    fig = Figure(figsize=(11, 0.5 + 0.55 * n_examples), dpi=80, layout="constrained")
    ax = fig.add_subplot()
    ax.axis("off")
    gold = [y["text"] for y in data.test.y]
    order = sorted(range(len(answers)), key=lambda i: max(exact_match(answers[i], g) for g in gold[i]))[:n_examples]
    for row, i in enumerate(order):
        ok = max(exact_match(answers[i], g) for g in gold[i]) == 1
        ax.text(0, 1 - row / n_examples, f"Q: {data.test.x[i]['question'][:110]}\n   predicted: {answers[i][:60]!r}"
                f"   true: {gold[i][0][:60]!r}", va="top", fontsize=8, color="#1b5e20" if ok else "#b71c1c",
                transform=ax.transAxes)
    fig.suptitle(f"{title}: exact match {metrics['exact_match']:.3f}, F1 {metrics['f1']:.3f}", fontsize=10)
    return fig


def regression_figure(data, metrics, predictions, title=""):
    """Predicted against true values on the test split, titled with R² and RMSE."""
    import numpy as np
    fig = Figure(figsize=(5, 4), dpi=80, layout="constrained")
    ax = fig.add_subplot()
    y = np.asarray(data.test.y, dtype=float)
    ax.scatter(y, predictions, s=8, alpha=0.6)
    lo, hi = float(min(y.min(), np.min(predictions))), float(max(y.max(), np.max(predictions)))
    ax.plot([lo, hi], [lo, hi], color="#999", lw=1, ls="--")
    ax.set(xlabel="true value", ylabel="predicted", title=f"{title}\nR² {metrics['r2']:.3f}, RMSE {metrics['rmse']:.3f}")
    return fig


def _shorten(text, keep=60):
    """Long paths shortened in the middle (the whole text goes in a tooltip), so nothing scrolls sideways."""
    return text if len(text) <= keep else f"{text[:keep // 2 - 1]}...{text[-(keep // 2 - 2):]}"


_KINDS = {"info": "#1f4e79", "ok": "#1b5e20", "warn": "#8a5300", "error": "#b71c1c"}
_LABEL = {"description_width": "130px"}


def _wide(**kw):
    return widgets.Layout(width="100%", **kw)


class _PanelCallback(ftkit.Callback):
    """The panel's own hooks into a run (the LiveView draws; this keeps the panel's state)."""

    def __init__(self, panel):
        self.panel = panel

    def on_train_begin(self, run):
        self.panel.run = run
        if self.panel._stop_event.is_set():
            run.request_stop()
        self.panel._say(f"Training <b>{run.name}</b>: {run.total_steps} steps... (Stop ends it after the "
                        "current step)", "info")

    def on_epoch_begin(self, run, epoch, mask):
        p = self.panel
        lrs = ftkit.group_lrs(run.config, len(mask))
        p.layermap.show(run.group_names, p._param_counts(), mask, [lr / run.config.lr for lr in lrs],
                        caption=f"{run.name}, epoch {epoch + 1} of {run.config.epochs}: "
                                f"{sum(mask)} of {len(mask)} groups train.")

    def on_epoch_end(self, run, record):
        shown = [k for k in ("val_accuracy", "val_r2", "val_f1", "val_map50") if record.get(k) is not None][:1]
        extra = "".join(f", {k.replace('_', ' ')} {record[k]:.3f}" for k in shown)
        self.panel._say(f"Training <b>{run.name}</b>: epoch {record['epoch'] + 1} of {run.config.epochs} done, "
                        f"val loss {record['val_loss']:.4f}{extra}", "info")


class FineTunePanel(widgets.VBox):
    """Controls for a fine-tuning run, Train/Stop, a LayerMap, a LiveView and a RunBoard, in one widget.

    ``model`` is a model name (see ``ftkit.MODELS``) or an ``FTModel`` you loaded;
    ``dataset`` a dataset name (``ftkit.DATASETS``) or a ``Dataset``; ``subset``
    is the number of training examples per class. ``config`` gives the starting
    settings (fields without a control, like ``seed``, are kept as given).
    ``load=True`` loads the data and model now, so the layer map can show them.
    """

    def __init__(self, config=None, *, model="mobilenet_v2", framework="torch", dataset="digits", subset=20,
                 image_size=96, fresh_weights=True, load=True, live_interval=0.75):
        self._base = config if config is not None else ftkit.FineTuneConfig()
        # without a config the strategy follows the data size (ftkit.suggest_strategy) until one is chosen
        self._auto_strategy = config is None
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._syncing = False
        self.busy = False
        self.run = None           # the latest run started from this panel
        self.callbacks = []       # more ftkit.Callback objects for every run (logging, your own plots...)
        self.thread = None        # the worker thread of the latest Train/Load
        self.error = None         # the latest error message shown, or None
        self.model = None         # the loaded FTModel
        self.data = None          # the loaded Dataset (after subset)
        self._model_key = self._data_key = None
        self._model_trained = False
        self.preview_message = ""  # why the LR preview could not be drawn, or ""
        self._fixed_model = model if not isinstance(model, str) else None
        self._fixed_data = dataset if not isinstance(dataset, str) else None
        self._callback = _PanelCallback(self)
        self._build_controls(model, framework, dataset, subset, image_size, fresh_weights)
        self.layermap = LayerMap()
        self.layermap.on_click(self._block_clicked)
        self.live = LiveView(min_interval=live_interval)
        self.runboard = RunBoard()
        super().__init__(self._layout())
        self.add_class("ftkit-panel")
        if self._auto_strategy:
            self._base = self._base.replace(strategy=self._suggested_strategy(subset))
        self._set_controls(self._base)
        if self._fixed_model is not None:
            self._use_model(self._fixed_model)
        if self._fixed_data is not None:
            self.data, self._data_key = self._fixed_data, "given"
        if load:
            try:
                self.load()
            except Exception as e:  # shown in the panel; the panel stays usable
                self._show_error(e)
        self._set_running(False)  # enables the controls (except those a given model/dataset fixes)
        self._changed()

    @classmethod
    def from_config(cls, config, **kwargs):
        """A panel whose controls start at ``config`` (a ``FineTuneConfig``)."""
        if not isinstance(config, ftkit.FineTuneConfig):
            raise ftkit.ConfigError("from_config needs a ftkit.FineTuneConfig")
        return cls(config=config, **kwargs)

    # --- the controls --------------------------------------------------------------------------------------
    def _build_controls(self, model, framework, dataset, subset, image_size, fresh_weights):
        W = widgets
        model_options = [(n if where == "offline" else f"{n} (needs network)", n)
                         for n, (_, where, _) in ftkit.MODELS.items()]
        name = model if isinstance(model, str) else model.name
        fw = framework if isinstance(model, str) else model.framework
        ds = dataset if isinstance(dataset, str) else dataset.name
        self.framework = W.ToggleButtons(options=[("PyTorch", "torch"), ("TensorFlow / Keras", "tf")], value=fw,
                                         description="framework", style={**_LABEL, "button_width": "150px"},
                                         tooltips=["train with PyTorch", "train with TensorFlow (Keras 3)"],
                                         tooltip="which framework trains: the same run in PyTorch or TensorFlow")
        self.model_name = W.Dropdown(options=model_options if name in ftkit.MODELS else [(name, name)], value=name,
                                     description="model", style=_LABEL, layout=_wide(),
                                     tooltip="the pre-trained network; '(needs network)' models download weights")
        self.dataset = W.Dropdown(options=list(ftkit.DATASETS) if ds in ftkit.DATASETS else [ds], value=ds,
                                  description="dataset", style=_LABEL, layout=_wide(),
                                  tooltip="the data to fine-tune on (fixed train/val/test splits)")
        self.subset = W.BoundedIntText(value=subset, min=1, max=100_000, description="examples / class",
                                       style=_LABEL, layout=W.Layout(width="230px"),
                                       tooltip="training examples per class: 5-50 shows transfer on a laptop "
                                               "in seconds; thousands take minutes")
        sizes = sorted(set(IMAGE_SIZES) | {image_size})
        self.image_size = W.Dropdown(options=sizes, value=image_size, description="image size (px)", style=_LABEL,
                                     layout=W.Layout(width="230px"),
                                     tooltip="images are resized to this side; 32-96 px is fast on a CPU, "
                                             "224 px is what ImageNet models saw")
        self.fresh = switch("start every run from the pre-trained weights",
                            "on: each Train reloads the pre-trained model; off: a run continues from the previous "
                            "run's weights", value=fresh_weights and self._fixed_model is None)
        self.load_button = W.Button(description="Load model", icon="download",
                                    tooltip="load the data and the model now, to see the layer groups")
        self.model_info = W.HTML(layout=W.Layout(overflow="hidden"))

        self.strategy = W.Dropdown(options=list(ftkit.STRATEGIES), description="strategy", style=_LABEL,
                                   tooltip="which layer groups train: full, the last few, only a new head "
                                           "(on cached or live features), or one more group every few epochs")
        self.strategy_help = W.HTML()
        self.trainable_groups = W.IntSlider(min=1, max=5, value=2, description="trainable groups", style=_LABEL,
                                            continuous_update=False,
                                            tooltip="partial: how many of the last groups train (the head counts)")
        self.unfreeze_every = W.IntSlider(min=1, max=10, value=1, description="unfreeze every (epochs)",
                                          style=_LABEL, continuous_update=False,
                                          tooltip="progressive: epochs between unfreezing the next group")
        self.probe_epochs = W.IntSlider(min=1, max=10, value=1, description="probe epochs (head alone)",
                                        style=_LABEL, continuous_update=False,
                                        tooltip="lp_ft: epochs that train the head alone before every group trains")

        self.lr = W.FloatText(description="learning rate", style=_LABEL, layout=W.Layout(width="250px"),
                              tooltip="the head's learning rate; AdamW fine-tuning usually uses 1e-5 to 1e-3 "
                                      "(higher, up to 1e-2, for a new head alone)")
        self.lr_slider = W.FloatLogSlider(base=10, min=-6, max=0, step=0.1, readout=False, description="or slide",
                                          continuous_update=False, layout=W.Layout(width="205px"),
                                          tooltip="the learning rate on a log scale, 1e-6 to 1")
        self.lr_hint = W.HTML("<small>AdamW: usually 1e-5 to 1e-3. Not sure? Try the LR finder.</small>")
        self.lr_find_button = W.Button(description="LR finder", icon="search",
                                       tooltip="a short LR range test (Smith 2015): the loss against a growing LR; "
                                               "the weights are restored afterwards")
        self.lr_use_button = W.Button(description="Use suggestion", icon="check", layout=W.Layout(display="none"),
                                      tooltip="set the learning rate to the LR finder's suggestion")
        self.lr_find_plot = W.Image(format="png", layout=W.Layout(display="none", max_width="100%"))
        self.lr_find_plot.add_class("ftkit-lr-find-plot")
        self.differential = switch("differential LRs (smaller for early layers)",
                                   "fastai-style discriminative LRs: the stem gets LR / ratio, the head the full LR, "
                                   "geometric in between")
        self.lr_ratio = W.FloatLogSlider(base=10, min=0, max=3, step=0.1, value=10, description="head LR / stem LR",
                                         style=_LABEL, continuous_update=False, readout_format=".3g",
                                         tooltip="how much larger the head's LR is than the stem's; 10-100 is common")
        self.optimizer = W.Dropdown(options=list(OPTIMIZERS), description="optimizer", style=_LABEL,
                                    tooltip="adamw (the default for fine-tuning), adam (no weight decay), or sgd "
                                            "with momentum (often wants a 10x larger LR)")
        self.schedule = W.Dropdown(options=list(ftkit.SCHEDULES), description="LR schedule", style=_LABEL,
                                   tooltip="how the LR changes over the run; cosine and onecycle are strong defaults")
        self.schedule_help = W.HTML()
        self.warmup_steps = W.BoundedIntText(min=0, max=1_000_000, description="warm-up steps", style=_LABEL,
                                             layout=W.Layout(width="250px"),
                                             tooltip="steps of linear warm-up before the schedule; 0-10% of the "
                                                     "run is typical")
        self.preview = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.preview.add_class("ftkit-lr-preview")

        self.weight_decay = W.FloatText(description="weight decay", style=_LABEL, layout=W.Layout(width="250px"),
                                        tooltip="decoupled weight decay (AdamW); 0.01-0.1 is typical, 0 turns it off")
        self.dropout = W.FloatSlider(min=0, max=0.9, step=0.05, description="dropout (head)", style=_LABEL,
                                     continuous_update=False,
                                     tooltip="dropout before the new head; 0.1-0.5 helps against overfitting on "
                                             "small data")
        self.augment = switch("augment the training images",
                              "random flips and shifts of the training images each step (not with "
                              "feature_extraction, whose features are computed once)")
        self.epochs = W.IntSlider(min=1, max=30, description="epochs", style=_LABEL, continuous_update=False,
                                  tooltip="passes over the training data; 2-10 is usual for fine-tuning")
        self.batch_size = W.Dropdown(options=BATCH_SIZES, description="batch size", style=_LABEL,
                                     layout=W.Layout(width="230px"),
                                     tooltip="examples per step; 16-64 on a CPU, larger on a GPU")
        self.precision = W.Dropdown(options=list(PRECISIONS), description="precision", style=_LABEL,
                                    layout=W.Layout(width="230px"),
                                    tooltip="auto: bf16 on a GPU that has it, else fp32; a CPU always uses fp32")
        self.run_name = W.Text(description="run name", placeholder="automatic (run1, run2...)", style=_LABEL,
                               layout=W.Layout(width="330px"),
                               tooltip="a name for the next run, shown on the RunBoard")

        self.train_button = W.Button(description="Train", button_style="success", icon="play",
                                     tooltip="start fine-tuning with these settings (in the background)")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True,
                                    tooltip="end the run after the current step; its history and last weights stay")
        self.eval_button = W.Button(description="Evaluate on test", icon="check-square-o", disabled=True,
                                    tooltip="the trained model on the test split: metrics, confusion matrix and "
                                            "a few predictions")
        self.code_button = W.ToggleButton(description="Show code", icon="code",
                                          tooltip="the plain ftkit calls that do the same run")
        for b, cls in ((self.train_button, "ftkit-train"), (self.stop_button, "ftkit-stop"),
                       (self.code_button, "ftkit-code-button"), (self.lr_find_button, "ftkit-lr-find"),
                       (self.eval_button, "ftkit-evaluate")):
            b.add_class(cls)
        self.device_line = W.HTML()
        self.device_line.add_class("ftkit-device")
        self.status = W.HTML()
        self.status.add_class("ftkit-status")
        self.code_view = W.HTML(layout=W.Layout(display="none"))
        self.code_view.add_class("ftkit-code")
        self.eval_view = W.VBox(layout=W.Layout(display="none"))
        self.eval_view.add_class("ftkit-eval")

        # every control that sets part of the config, by config field (plus the model/data ones)
        self.controls = {
            "framework": self.framework, "model": self.model_name, "dataset": self.dataset,
            "subset": self.subset, "image_size": self.image_size, "fresh_weights": self.fresh,
            "strategy": self.strategy, "trainable_groups": self.trainable_groups,
            "unfreeze_every": self.unfreeze_every, "probe_epochs": self.probe_epochs, "lr": self.lr,
            "differential": self.differential,
            "lr_ratio": self.lr_ratio, "optimizer": self.optimizer, "schedule": self.schedule,
            "warmup_steps": self.warmup_steps, "weight_decay": self.weight_decay, "dropout": self.dropout,
            "augment": self.augment, "epochs": self.epochs, "batch_size": self.batch_size,
            "precision": self.precision,
        }
        # an error line under each control, for messages that name its field (ConfigError "lr=0 ...")
        self.field_errors = {k: W.HTML(layout=W.Layout(display="none")) for k in self.controls}
        for k, w in self.field_errors.items():
            w.add_class("ftkit-field-error")
            w.add_class(f"ftkit-field-error-{k}")
        for w in self.controls.values():
            w.observe(self._on_control, names="value")
        self.strategy.observe(self._on_strategy_chosen, names="value")
        self.lr_slider.observe(self._on_lr_slider, names="value")
        self.train_button.on_click(lambda _: self.train())
        self.stop_button.on_click(lambda _: self.stop())
        self.load_button.on_click(lambda _: self.load(background=True))
        self.lr_find_button.on_click(lambda _: self.find_lr())
        self.lr_use_button.on_click(lambda _: self._use_lr_suggestion())
        self.eval_button.on_click(lambda _: self.evaluate())
        self.code_button.observe(lambda _: self._show_code(), names="value")

    def _with_error(self, field, *rows):
        """A control (or a row holding it), labelled so its tooltip shows, followed by its error line."""
        return widgets.VBox([labelled(r) if isinstance(r, DescriptionWidget) else r for r in rows]
                            + [self.field_errors[field]], layout=widgets.Layout(margin="0"))

    def _layout(self):
        W = widgets
        e = self._with_error
        # the first screen: the settings used most, the buttons, the status and the live plots
        quick = W.VBox([
            e("framework", self.framework),
            e("strategy", self.strategy), self.strategy_help,
            e("lr", W.HBox([labelled(self.lr), labelled(self.lr_slider, "55px"), self.lr_find_button, self.lr_use_button],
                           layout=W.Layout(flex_flow="row wrap", align_items="center"))), self.lr_hint,
            e("epochs", self.epochs),
        ], layout=W.Layout(width="100%"))
        quick.add_class("ftkit-quick")
        buttons = W.HBox([self.train_button, self.stop_button, self.eval_button, self.code_button],
                         layout=W.Layout(flex_flow="row wrap"))
        head = W.HBox([W.HTML("<b style='font-size:1.15em'>ftkit fine-tuning panel</b>"), self.device_line],
                      layout=W.Layout(justify_content="space-between", width="100%"))

        def page(*children):
            return W.VBox(list(children), layout=W.Layout(padding="4px", overflow="hidden"))

        tabs = W.Tab(children=[
            page(e("model", self.model_name), e("dataset", self.dataset),
                 W.HBox([e("subset", self.subset), e("image_size", self.image_size)],
                                                       layout=W.Layout(flex_flow="row wrap")),
                 self.fresh, self.load_button, self.model_info),
            page(e("trainable_groups", self.trainable_groups), e("unfreeze_every", self.unfreeze_every),
                 e("probe_epochs", self.probe_epochs),
                 W.HTML("<small>The strategy is on the first screen; the layer map below the live view shows "
                        "which groups train. strategy 'plan' takes its per-epoch plan from code: "
                        "<code>panel.set_config(config.replace(strategy='plan', plan=[1, 1, 5]))</code>."
                        "</small>")),
            page(e("differential", self.differential), e("lr_ratio", self.lr_ratio), e("optimizer", self.optimizer),
                 e("schedule", self.schedule), self.schedule_help, e("warmup_steps", self.warmup_steps),
                 self.preview, self.lr_find_plot),
            page(e("weight_decay", self.weight_decay), e("dropout", self.dropout), e("augment", self.augment)),
            page(W.HBox([e("batch_size", self.batch_size), e("precision", self.precision)],
                        layout=W.Layout(flex_flow="row wrap")), labelled(self.run_name)),
        ], titles=["Model and data", "What trains", "Learning rate", "Regularization", "Mechanics"],
            layout=W.Layout(width="auto", margin="2px 4px 2px 0"))
        tabs.add_class("ftkit-tabs")
        self.tabs = tabs
        self._tab_of = {"model": 0, "dataset": 0, "subset": 0, "image_size": 0, "fresh_weights": 0,
                        "trainable_groups": 1, "unfreeze_every": 1, "probe_epochs": 1, "differential": 2,
                        "lr_ratio": 2, "optimizer": 2, "schedule": 2, "warmup_steps": 2, "weight_decay": 3,
                        "dropout": 3, "augment": 3, "batch_size": 4, "precision": 4}
        groups = W.VBox([W.HTML("<b>Layer groups</b> (click a block to freeze / unfreeze it)"), self.layermap])
        return [head, quick, buttons, self.status, self.live, groups, self.eval_view, self.code_view, tabs,
                self.runboard]

    # --- config <-> controls -----------------------------------------------------------------------------
    @property
    def config(self):
        """The FineTuneConfig the controls describe now (not yet checked: Train checks it)."""
        return self._base.replace(
            strategy=self.strategy.value, trainable_groups=int(self.trainable_groups.value),
            unfreeze_every=int(self.unfreeze_every.value), probe_epochs=int(self.probe_epochs.value),
            plan=self._base.plan if self.strategy.value == "plan" else None, epochs=int(self.epochs.value),
            batch_size=int(self.batch_size.value), optimizer=self.optimizer.value, lr=float(self.lr.value),
            lr_ratio=float(self.lr_ratio.value) if self.differential.value else None,
            schedule=self.schedule.value, warmup_steps=int(self.warmup_steps.value),
            weight_decay=float(self.weight_decay.value), dropout=self._dropout_value(),
            augment=bool(self.augment.value), precision=self.precision.value)

    def _dropout_value(self):
        """The slider's rate; None (keep the model's, 0.2 as the panel loads it) while it shows that default
        for a config that left dropout unset."""
        rate = float(self.dropout.value)
        return None if self._base.dropout is None and abs(rate - 0.2) < 1e-9 else rate

    def set_config(self, config):
        """Move the controls to ``config`` (fields without a control are kept from it too)."""
        self._base = config
        self._set_controls(config)
        self._changed()

    def _set_controls(self, c):
        self._syncing = True
        try:
            self.epochs.max = max(self.epochs.max, c.epochs)
            if c.batch_size not in self.batch_size.options:
                self.batch_size.options = sorted(set(self.batch_size.options) | {c.batch_size})
            self.trainable_groups.max = max(self.trainable_groups.max, c.trainable_groups)
            self.unfreeze_every.max = max(self.unfreeze_every.max, c.unfreeze_every)
            self.probe_epochs.max = max(self.probe_epochs.max, c.probe_epochs)
            values = dict(strategy=c.strategy, trainable_groups=c.trainable_groups,
                          unfreeze_every=c.unfreeze_every, probe_epochs=c.probe_epochs, epochs=c.epochs,
                          batch_size=c.batch_size,
                          optimizer=c.optimizer, lr=c.lr, differential=c.lr_ratio is not None,
                          schedule=c.schedule, warmup_steps=c.warmup_steps, weight_decay=c.weight_decay,
                          dropout=0.2 if c.dropout is None else c.dropout, augment=c.augment,
                          precision=c.precision)
            if c.lr_ratio is not None:
                values["lr_ratio"] = c.lr_ratio
            for name, value in values.items():
                self.controls[name].value = value
            if c.lr > 0:
                self.lr_slider.value = c.lr
        finally:
            self._syncing = False

    def _on_control(self, change):
        if self._syncing:
            return
        self._clear_field_errors()
        if self._auto_strategy and change["owner"] in (self.subset, self.augment):
            self._syncing = True
            try:
                self.strategy.value = ftkit.suggest_strategy(self._examples_per_class(), bool(self.augment.value))
            finally:
                self._syncing = False
        if change["owner"] is self.lr and change["new"] and change["new"] > 0:
            self._syncing = True
            try:
                self.lr_slider.value = change["new"]
            finally:
                self._syncing = False
        self._changed()

    def _on_strategy_chosen(self, change):
        if not self._syncing:
            self._auto_strategy = False   # the learner chose: the data size no longer decides

    def _examples_per_class(self):
        if self._fixed_data is not None:
            counts = self._fixed_data.class_counts("train")
            return int(counts.min()) if len(counts) else 0
        return int(self.subset.value)

    def _suggested_strategy(self, subset):
        return ftkit.suggest_strategy(int(subset), self._base.augment)

    def _on_lr_slider(self, change):
        if not self._syncing:
            self.lr.value = float(f"{change['new']:.3g}")

    def _changed(self):
        """Bring everything that depends on the settings up to date."""
        c = self.config
        self.trainable_groups.layout.display = None if c.strategy == "partial" else "none"
        self.unfreeze_every.layout.display = None if c.strategy == "progressive" else "none"
        self.probe_epochs.layout.display = None if c.strategy == "lp_ft" else "none"
        self.lr_ratio.disabled = self.busy or not self.differential.value
        n = self._examples_per_class()
        suggested = ftkit.suggest_strategy(n, c.augment)
        why = (f"suggested for {n} examples per class" if c.strategy == suggested else
               f"for {n} examples per class the rule suggests <b>{suggested}</b>")
        self.strategy_help.value = (f"<small><i>When to use:</i> {html.escape(ftkit.STRATEGIES[c.strategy])} "
                                    f"(<span title='{html.escape(rule_text())}'>{why}</span>)</small>")
        self.schedule_help.value = f"<i>{html.escape(ftkit.SCHEDULES[c.schedule])}</i>"
        is_image = ftkit.MODELS.get(self.model_name.value, ("image",))[0] == "image"
        self.image_size.disabled = self.busy or not is_image or self._fixed_model is not None
        self._draw_preview(c)
        if self._model_current():
            self._show_device()
        if not self.busy:
            self._show_layers(c)
        if self.code_button.value:
            self._show_code()

    # --- loading ---------------------------------------------------------------------------------------------
    def _wanted_data_key(self):
        return "given" if self._fixed_data is not None else (self.dataset.value, int(self.subset.value))

    def _wanted_model_key(self, data):
        """(framework, model, task, classes, image size) of the model the controls and ``data`` call for: the
        dataset's task decides the head (a QA span head has no classes; a detector takes the data's image side)."""
        if self._fixed_model is not None:
            return "given"
        name, head = self.model_name.value, ftkit.models.head_for(data)
        size = self.image_size.value if ftkit.MODELS[name][0] == "image" else None
        size = head.get("image_size", size)
        # dropout is the run's (FineTuneConfig.dropout)
        return (self.framework.value, name, head["task"], head["num_classes"], size)

    def load(self, background=False):
        """Load the data and the model the controls name (only what changed). ``background=True``: in a thread."""
        if background:
            return self._start(self._load_job)
        self._load_now()
        self._changed()
        self._say(f"Ready: {html.escape(self.model.name)} ({self.model.framework}) on "
                  f"{html.escape(self.data.name)}. Press Train.", "ok")
        return self.model

    def _load_job(self):
        self._load_now()
        self._say(f"Loaded {self.model.name} ({self.model.framework}) and {self.data.name}.", "ok")

    def _load_now(self, fresh=False):
        key = self._wanted_data_key()
        if key != self._data_key:
            self._say(f"Loading dataset {key[0]!r}...", "info")
            self.data = ftkit.load_dataset(key[0], verbose=False).subset(key[1])
            self._data_key = key
        mkey = self._wanted_model_key(self.data)
        if mkey != self._model_key or (fresh and mkey != "given"):
            fw, name, task, n_classes, size = mkey
            self._say(f"Loading model {name!r} ({fw})...", "info")
            kwargs = {"image_size": size} if size else {}
            model = ftkit.load_model(name, framework=fw, num_classes=n_classes, task=task, verbose=False, **kwargs)
            self._use_model(model)
            self._model_key, self._model_trained = mkey, False
        source = str(self.model.source)
        self.model_info.value = (f"<small>{html.escape(self.model.name)}: <span title='{html.escape(source)}'>"
                                 f"{html.escape(_shorten(source))}</span><br>{html.escape(repr(self.data))}</small>")
        self._show_device()
        return self.model, self.data

    def _show_device(self):
        """The device line: where the next run trains, and in which precision."""
        try:
            info = ftkit.device_info(self.model.framework if self.model is not None else self.framework.value,
                                     self.config)
        except ftkit.FtkitError as e:
            self.device_line.value = f"<small>device: {html.escape(str(e))}</small>"
            return
        self.device_line.value = (f"<small title='where the next run trains'>device: <b>{html.escape(info['name'])}"
                                  f"</b> ({info['device']}), {info['precision']}</small>")

    def _use_model(self, model):
        self.model = model
        if self._fixed_model is not None:
            self._model_key = "given"
        n = len(model.groups)
        self._syncing = True
        try:
            self.trainable_groups.max = n
        finally:
            self._syncing = False

    def _param_counts(self):
        if not hasattr(self, "_counts") or self._counts[0] is not self.model:
            self._counts = (self.model, self.model.param_counts())
        return self._counts[1]

    def _model_current(self):
        """Is the loaded model the one the model controls name (same groups)?"""
        if self.model is None:
            return False
        if self._fixed_model is not None:
            return True
        return (self.model.name, self.model.framework) == (self.model_name.value, self.framework.value)

    # --- layer map ------------------------------------------------------------------------------------------
    def _first_mask(self, config):
        return plan(config.replace(epochs=1), len(self.model.groups), self.model.new_groups)[0]

    def _show_layers(self, config):
        if not self._model_current():
            self.layermap.show_message(f"Model {self.model_name.value!r} ({self.framework.value}) is not loaded "
                                       "yet: press Load model (or Train) to see its layer groups.")
            return
        n = len(self.model.groups)
        mask = self._first_mask(config)
        try:
            mults = [lr / config.lr for lr in ftkit.group_lrs(config, n)]
        except (ZeroDivisionError, TypeError):
            mults = [None] * n
        notes = [""] * n
        if config.strategy == "progressive":
            for i in range(n):
                first = next((e for e, m in enumerate(plan(config, n, self.model.new_groups)) if m[i]), None)
                notes[i] = "" if first in (None, 0) else f"unfreezes in epoch {first + 1}"
        self.model.set_trainable(mask)  # the model's freeze state follows the panel's settings
        self.layermap.show(self.model.group_names, self._param_counts(), mask, mults, notes,
                           caption=f"Next run: {sum(mask)} of {n} groups train in the first epoch "
                                   f"(strategy {config.strategy}).")

    def _block_clicked(self, index):
        """A click on block ``index``: freeze it and everything before it, or unfreeze it and everything after.

        ftkit's strategies always train the *last* k groups (the head and the layers
        next to it), so a click moves the boundary between frozen and trainable.
        """
        if self.busy or not self._model_current():
            return
        n = len(self.model.groups)
        mask = self._first_mask(self.config)
        k = n - index - 1 if mask[index] else n - index
        if k < 1:
            self._say("The head is new (randomly initialised), so it always trains: it cannot be frozen.", "warn")
            return
        if k == n:
            strategy = "full"
        elif k == 1:
            strategy = self.strategy.value if self.strategy.value in ("head_only", "feature_extraction") \
                else "head_only"
        else:
            strategy = "partial"
        self._syncing = True
        try:
            self.strategy.value = strategy
            if strategy == "partial":
                self.trainable_groups.value = k
        finally:
            self._syncing = False
        self._changed()
        name = self.model.group_names[index]
        self._say(f"{'Froze' if mask[index] else 'Unfroze'} {html.escape(name)}: the last {k} of {n} groups "
                  f"train now (strategy <b>{strategy}</b>).", "ok")

    # --- LR preview ---------------------------------------------------------------------------------------------
    def _draw_preview(self, config):
        try:   # before the model is loaded its group count is unknown: nothing is checked against it
            config.validate(n_groups=len(self.model.groups) if self._model_current() else None)
            n_groups = len(self.model.groups) if self._model_current() else 1
            if not self._model_current():
                config = config.replace(group_lrs=None)
        except ftkit.ConfigError as e:
            self.preview_message = f"No preview: {e}"
            self.preview.value = message_png(self.preview_message, width=5.5, height=1.0)
            return
        self.preview_message = ""
        if self.data is not None and self._data_key == self._wanted_data_key():
            n_train, exact = len(self.data.train), True
        else:
            n_train, exact = int(self.subset.value) * 10, False
        per_epoch = steps_per_epoch(n_train, config)
        total = per_epoch * config.epochs
        curve = ftkit.lr_curve(config, total)
        masks = plan(config, n_groups, self.model.new_groups if self._model_current() else 1)
        names = self.model.group_names if self._model_current() else ["all groups"]
        fig, (ax,) = new_figure(5.5, 2.4)
        for g, (name, base) in enumerate(zip(names, ftkit.group_lrs(config, n_groups))):
            ys = [base * f if masks[min(s // per_epoch, len(masks) - 1)][g] else 0.0 for s, f in enumerate(curve)]
            ax.plot(range(total), gaps_at_zero(ys), color=GROUP_COLOURS[g % len(GROUP_COLOURS)], label=name)
        for e in range(1, config.epochs):
            ax.axvline(e * per_epoch - 0.5, color="#bbb", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("LR")
        ax.set_title(f"planned LR: {total} steps ({'' if exact else '~'}{n_train} examples, batch "
                     f"{config.batch_size})", fontsize=9)
        ax.legend(fontsize=7, title="gap = frozen", title_fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        self.preview.value = to_png(fig)

    # --- train / stop ----------------------------------------------------------------------------------------
    def train(self, wait=False):
        """Start a run in the background (what Train does). Nothing happens if one is going.

        Returns the worker thread, or with ``wait=True`` waits and returns the Run
        (None if it could not start).
        """
        config = self.config
        try:
            n_groups = len(self.model.groups) if self._model_current() else None
            config.validate(n_groups=n_groups)
        except ftkit.ConfigError as e:
            if not self.busy:
                self._show_error(e)
            return None
        thread = self._start(lambda: self._train_job(config))
        if wait and thread is not None:
            thread.join()
            return self.run
        return thread

    def stop(self):
        """End the current run after its current step (what Stop does); the history is kept."""
        self._stop_event.set()
        if self.run is not None and self.busy:
            self.run.request_stop()
        if self.busy:
            self._say("Stopping after the current step...", "warn")

    def _start(self, job):
        with self._lock:
            if self.busy:
                return None  # one job at a time: a second click never starts a second run
            self.busy = True
        self._stop_event.clear()
        self.error = None
        self._set_running(True)
        self.thread = threading.Thread(target=self._work, args=(job,), name="ftkit-panel", daemon=True)
        self.thread.start()
        return self.thread

    def _work(self, job):
        try:
            job()
        except Exception as e:
            self._show_error(e)
        finally:
            with self._lock:
                self.busy = False
            self._set_running(False)
            self._changed()
            self.runboard.refresh()

    def _train_job(self, config):
        self.run = None
        self._hide_eval()
        self.live.clear("Starting a new run: loading the model and preparing the data...")
        self.runboard.refresh()
        fresh = self._model_trained and self.fresh.value
        self._load_now(fresh=fresh)
        if self._stop_event.is_set():
            self._say("Stopped before training started.", "warn")
            return
        self._model_trained = True
        name = self.run_name.value.strip() or None
        run = ftkit.finetune(self.model, self.data, config.replace(progress=False), name=name,
                             callbacks=[self._callback, self.live, *self.callbacks])
        self.run_name.value = ""
        kind = "ok" if run.status in ("finished", "early_stopped", "stopped") else "warn"
        self._say(run_summary_html(run), kind, run=run)

    # --- LR finder and evaluation ---------------------------------------------------------------------------
    def find_lr(self, wait=False):
        """Run ``ftkit.lr_find`` with the current settings in the background; show its curve and offer its
        suggestion (the "Use suggestion" button). The model is left exactly as it was."""
        config = self.config
        try:
            config.validate(n_groups=len(self.model.groups) if self._model_current() else None)
        except ftkit.ConfigError as e:
            self._show_error(e)
            return None
        thread = self._start(lambda: self._lr_find_job(config))
        if wait and thread is not None:
            thread.join()
        return thread

    def _lr_find_job(self, config):
        self._load_now()
        self._say("LR finder: a short range test with a growing learning rate...", "info")
        result = ftkit.lr_find(self.model, self.data, config.replace(progress=False))
        self.lr_result = result
        fig, (ax,) = new_figure(5.5, 2.4)
        result.plot(ax=ax)
        ax.set_title("LR finder: loss against learning rate", fontsize=9)
        self.lr_find_plot.value = to_png(fig)
        self.lr_find_plot.layout.display = None
        self.lr_use_button.description = f"Use {result.suggestion:.1e}"
        self.lr_use_button.layout.display = None
        self._say(f"LR finder suggests <b>{result.suggestion:.1e}</b> (steepest fall of the loss; the curve is in "
                  "the Learning rate tab). The model is unchanged.", "ok")

    def _use_lr_suggestion(self):
        if getattr(self, "lr_result", None) is not None:
            self.lr.value = float(f"{self.lr_result.suggestion:.2g}")
            self._say(f"Learning rate set to {self.lr.value:g}.", "ok")

    def evaluate(self, wait=False):
        """Evaluate the trained model on the test split (what "Evaluate on test" does): metrics, the
        confusion matrix and a few predictions, below the live view."""
        thread = self._start(self._evaluate_job)
        if wait and thread is not None:
            thread.join()
        return thread

    def _evaluate_job(self):
        if self.model is None or self.data is None or self.run is None:
            self._say("Train a run first: Evaluate shows how the trained model does on the test split.", "warn")
            return
        self._say("Evaluating on the test split...", "info")
        metrics = ftkit.evaluate(self.model, self.data, "test")
        scores = ftkit.predict(self.model, self.data, "test")
        self.test_metrics = metrics
        self.run.test_metrics = metrics
        self._show_eval(metrics, scores)
        self._say(f"<b>{html.escape(self.run.name)}</b> on the test split ({len(self.data.test)} examples): "
                  + ", ".join(f"{k} {metrics[k]:.3f}" for k in EVALUATION_KEYS if k in metrics), "ok")

    def _show_eval(self, metrics, scores):
        W = widgets
        title = f"{self.run.name} on the test split"
        if self.data.task == "detection":
            fig = detection_figure(self.data, metrics, scores, title)
        elif self.data.task == "qa":
            fig = answers_figure(self.data, metrics, scores, title)
        elif self.data.task == "regression":
            fig = regression_figure(self.data, metrics, scores, title)
        else:
            fig = evaluation_figure(self.data, metrics, scores, title=title)
        picture = W.Image(value=to_png(fig), format="png", layout=W.Layout(max_width="100%"))
        picture.add_class("ftkit-eval-plot")
        close = W.Button(description="Hide", icon="times", tooltip="hide the evaluation")
        close.on_click(lambda _: self._hide_eval())
        self.eval_view.children = [W.HTML("<b>Evaluation on the test split</b>"), picture, close]
        self.eval_view.layout.display = None

    def _hide_eval(self):
        self.eval_view.layout.display = "none"

    def _set_running(self, running):
        for w in [*self.controls.values(), self.lr_slider, self.load_button]:
            w.disabled = running
        if not running:
            self.lr_ratio.disabled = not self.differential.value
            self.fresh.disabled = self._fixed_model is not None
            for w in (self.framework, self.model_name):
                w.disabled = self._fixed_model is not None
            for w in (self.dataset, self.subset):
                w.disabled = self._fixed_data is not None
        for b in (self.lr_find_button, self.lr_use_button):
            b.disabled = running
        self.layermap.disabled = running
        self.train_button.disabled = running
        self.stop_button.disabled = not running
        self.eval_button.disabled = running or self.run is None or self.run.status == "failed"

    # --- messages and code ----------------------------------------------------------------------------------
    def _say(self, text, kind="info", run=None):
        """The status line; with ``run``, its figures are also data attributes (tests compare them)."""
        colour = _KINDS[kind]
        data = ""
        if run is not None:
            best = run.best_epoch or {}
            acc = best.get("val_accuracy")
            data = (f" data-epochs='{len(run.history['epochs'])}' data-steps='{run.steps_done}'"
                    f" data-best-accuracy='{'' if acc is None else f'{acc:.3f}'}'")
        self.status.value = (f"<div data-kind='{kind}'{data} style='color:{colour};border-left:4px solid {colour};"
                             f"padding:2px 8px;margin:4px 0'>{text}</div>")

    def _clear_field_errors(self):
        for w in self.field_errors.values():
            if w.layout.display != "none":
                w.value, w.layout.display = "", "none"

    def _show_error(self, error):
        if isinstance(error, ftkit.FtkitError):
            self.error = f"Can't train with these settings: {error}"
            self._say(html.escape(self.error), "error")
            field = _field_of(str(error))
            if field in self.field_errors:   # also right under the control it names
                box = self.field_errors[field]
                box.value = (f"<div data-kind='error' style='color:{_KINDS['error']};font-size:0.9em'>"
                             f"&#9888; {html.escape(str(error))}</div>")
                box.layout.display = None
                if field in self._tab_of:
                    self.tabs.selected_index = self._tab_of[field]
        else:
            self.error = f"Something went wrong: {type(error).__name__}: {error}"
            tb = html.escape("".join(traceback.format_exception(error)))
            self._say(f"{html.escape(self.error)}<details><summary>details</summary><pre>{tb}</pre></details>",
                      "error")

    def _show_code(self):
        if self.code_button.value:
            self.code_view.value = f"<pre class='ftkit-code-text'>{html.escape(self.code())}</pre>"
            self.code_view.layout.display = None
        else:
            self.code_view.layout.display = "none"

    def code(self):
        """The plain ftkit calls that reproduce the panel's current settings, as Python source."""
        c = self.config
        lines = ["import ftkit", ""]
        if self._fixed_data is not None:
            lines.append("data = ...  # the Dataset you gave the panel")
        else:
            lines.append(f"data = ftkit.load_dataset({self.dataset.value!r}).subset({int(self.subset.value)})")
        if self._fixed_model is not None:
            lines.append("model = ...  # the model you gave the panel")
        else:
            loaded = self.data is not None and self._data_key == self._wanted_data_key()
            key = self._wanted_model_key(self.data) if loaded else None
            task = key[2] if key else "classification"
            args = [repr(self.model_name.value), f"framework={self.framework.value!r}"]
            args += [] if task == "qa" else ["num_classes=data.num_classes"]
            args += [] if task == "classification" else [f"task={task!r}"]
            if ftkit.MODELS[self.model_name.value][0] == "image":
                args.append(f"image_size={key[4] if key else self.image_size.value}")
            lines.append(f"model = ftkit.load_model({', '.join(args)})")
        changed = [(k, v) for k, v in c.to_dict().items() if k != "progress" and v != getattr(_DEFAULT, k)]
        if changed:
            lines.append("config = ftkit.FineTuneConfig(")
            lines += [f"    {k}={v!r}," for k, v in changed]
            lines.append(")")
        else:
            lines.append("config = ftkit.FineTuneConfig()")
        lines.append("run = ftkit.finetune(model, data, config)")
        return "\n".join(lines) + "\n"

    def print_code(self):
        print(self.code())
