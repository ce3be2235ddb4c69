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
  keeping its history and its best weights.
* The panel's callback and the LiveView (also an ``ftkit.Callback``) update the
  plots from the training thread.

For tests and scripts the same actions are methods: ``panel.train(wait=True)``,
``panel.stop()``, ``panel.load()``, ``panel.layermap.click(i)``; ``panel.run``
is the latest run and ``panel.thread`` the worker thread.
"""
import html
import threading
import traceback

import ipywidgets as widgets
from matplotlib.ticker import MaxNLocator

import ftkit
from ftkit.config import OPTIMIZERS, PRECISIONS
from ftkit.strategies import plan
from ftkit.training import steps_per_epoch

from ._plot import GROUP_COLOURS, gaps_at_zero, message_png, new_figure, to_png
from .layermap import LayerMap
from .live import LiveView
from .runboard import RunBoard

IMAGE_SIZES = [32, 64, 96, 128, 160, 224]
BATCH_SIZES = [8, 16, 32, 64, 128, 256]
_DEFAULT = ftkit.FineTuneConfig()
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
        acc = record.get("val_accuracy")
        extra = f", val accuracy {acc:.3f}" if acc is not None else ""
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
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._syncing = False
        self.busy = False
        self.run = None           # the latest run started from this panel
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
                                         description="framework", style={**_LABEL, "button_width": "150px"})
        self.model_name = W.Dropdown(options=model_options if name in ftkit.MODELS else [(name, name)], value=name,
                                     description="model", style=_LABEL, layout=_wide())
        self.dataset = W.Dropdown(options=list(ftkit.DATASETS) if ds in ftkit.DATASETS else [ds], value=ds,
                                  description="dataset", style=_LABEL, layout=_wide())
        self.subset = W.BoundedIntText(value=subset, min=1, max=100_000, description="examples / class",
                                       style=_LABEL)
        sizes = sorted(set(IMAGE_SIZES) | {image_size})
        self.image_size = W.Dropdown(options=sizes, value=image_size, description="image size (px)", style=_LABEL)
        self.fresh = W.Checkbox(value=fresh_weights and self._fixed_model is None, indent=False,
                                description="start every run from the pre-trained weights",
                                layout=W.Layout(width="auto"))
        self.load_button = W.Button(description="Load model", icon="download",
                                    tooltip="load the data and the model now, to see the layer groups")
        self.model_info = W.HTML()

        self.strategy = W.Dropdown(options=list(ftkit.STRATEGIES), description="strategy", style=_LABEL)
        self.strategy_help = W.HTML()
        self.trainable_groups = W.IntSlider(min=1, max=5, value=2, description="trainable groups", style=_LABEL,
                                            continuous_update=False)
        self.unfreeze_every = W.IntSlider(min=1, max=10, value=1, description="unfreeze every (epochs)",
                                          style=_LABEL, continuous_update=False)

        self.lr = W.FloatText(description="learning rate", style=_LABEL, layout=W.Layout(width="260px"))
        self.lr_slider = W.FloatLogSlider(base=10, min=-6, max=0, step=0.1, readout=False,
                                          continuous_update=False, layout=W.Layout(width="180px"))
        self.differential = W.Checkbox(indent=False, description="differential LRs (smaller for early layers)",
                                       layout=W.Layout(width="auto"))
        self.lr_ratio = W.FloatLogSlider(base=10, min=0, max=3, step=0.1, value=10, description="head LR / stem LR",
                                         style=_LABEL, continuous_update=False, readout_format=".3g")
        self.optimizer = W.Dropdown(options=list(OPTIMIZERS), description="optimizer", style=_LABEL)
        self.schedule = W.Dropdown(options=list(ftkit.SCHEDULES), description="LR schedule", style=_LABEL)
        self.schedule_help = W.HTML()
        self.warmup_steps = W.BoundedIntText(min=0, max=1_000_000, description="warm-up steps", style=_LABEL)
        self.preview = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.preview.add_class("ftkit-lr-preview")

        self.weight_decay = W.FloatText(description="weight decay", style=_LABEL, layout=W.Layout(width="260px"))
        self.dropout = W.FloatSlider(min=0, max=0.9, step=0.05, description="dropout (head)", style=_LABEL,
                                     continuous_update=False)
        self.augment = W.Checkbox(indent=False, description="augment the training images",
                                  layout=W.Layout(width="auto"))
        self.epochs = W.IntSlider(min=1, max=30, description="epochs", style=_LABEL, continuous_update=False)
        self.batch_size = W.Dropdown(options=BATCH_SIZES, description="batch size", style=_LABEL)
        self.precision = W.Dropdown(options=list(PRECISIONS), description="precision", style=_LABEL)

        self.train_button = W.Button(description="Train", button_style="success", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.code_button = W.ToggleButton(description="Show code", icon="code",
                                          tooltip="the plain ftkit calls that do the same run")
        for b, cls in ((self.train_button, "ftkit-train"), (self.stop_button, "ftkit-stop"),
                       (self.code_button, "ftkit-code-button")):
            b.add_class(cls)
        self.status = W.HTML()
        self.status.add_class("ftkit-status")
        self.code_view = W.HTML(layout=W.Layout(display="none"))
        self.code_view.add_class("ftkit-code")

        # every control that sets part of the config, by config field (plus the model/data ones)
        self.controls = {
            "framework": self.framework, "model": self.model_name, "dataset": self.dataset,
            "subset": self.subset, "image_size": self.image_size, "fresh_weights": self.fresh,
            "strategy": self.strategy, "trainable_groups": self.trainable_groups,
            "unfreeze_every": self.unfreeze_every, "lr": self.lr, "differential": self.differential,
            "lr_ratio": self.lr_ratio, "optimizer": self.optimizer, "schedule": self.schedule,
            "warmup_steps": self.warmup_steps, "weight_decay": self.weight_decay, "dropout": self.dropout,
            "augment": self.augment, "epochs": self.epochs, "batch_size": self.batch_size,
            "precision": self.precision,
        }
        for w in self.controls.values():
            w.observe(self._on_control, names="value")
        self.lr_slider.observe(self._on_lr_slider, names="value")
        self.train_button.on_click(lambda _: self.train())
        self.stop_button.on_click(lambda _: self.stop())
        self.load_button.on_click(lambda _: self.load(background=True))
        self.code_button.observe(lambda _: self._show_code(), names="value")

    def _layout(self):
        W = widgets

        def section(title, *children):
            box = W.VBox([W.HTML(f"<b>{title}</b>"), *children],
                         layout=W.Layout(border="1px solid #ddd", padding="4px 8px", margin="2px"))
            return box

        left = W.VBox([
            section("Model and data", self.framework, self.model_name, self.dataset,
                    W.HBox([self.subset, self.image_size]), self.fresh, self.load_button, self.model_info),
            section("What trains", self.strategy, self.strategy_help, self.trainable_groups, self.unfreeze_every),
            section("Regularisation and run", self.weight_decay, self.dropout, self.augment, self.epochs,
                    W.HBox([self.batch_size, self.precision])),
        ], layout=W.Layout(width="50%"))
        right = W.VBox([
            section("Learning rate", W.HBox([self.lr, self.lr_slider]), self.differential, self.lr_ratio,
                    self.optimizer, self.schedule, self.schedule_help, self.warmup_steps, self.preview),
        ], layout=W.Layout(width="50%"))
        title = W.HTML("<h3 style='margin:4px 0'>ftkit fine-tuning panel</h3>")
        groups = section("Layer groups (click a block to freeze / unfreeze it)", self.layermap)
        buttons = W.HBox([self.train_button, self.stop_button, self.code_button])
        return [title, W.HBox([left, right]), groups, buttons, self.status, self.code_view, self.live,
                self.runboard]

    # --- config <-> controls -----------------------------------------------------------------------------
    @property
    def config(self):
        """The FineTuneConfig the controls describe now (not yet checked: Train checks it)."""
        return self._base.replace(
            strategy=self.strategy.value, trainable_groups=int(self.trainable_groups.value),
            unfreeze_every=int(self.unfreeze_every.value), epochs=int(self.epochs.value),
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
            values = dict(strategy=c.strategy, trainable_groups=c.trainable_groups,
                          unfreeze_every=c.unfreeze_every, epochs=c.epochs, batch_size=c.batch_size,
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
        if change["owner"] is self.lr and change["new"] and change["new"] > 0:
            self._syncing = True
            try:
                self.lr_slider.value = change["new"]
            finally:
                self._syncing = False
        self._changed()

    def _on_lr_slider(self, change):
        if not self._syncing:
            self.lr.value = float(f"{change['new']:.3g}")

    def _changed(self):
        """Bring everything that depends on the settings up to date."""
        c = self.config
        self.trainable_groups.layout.display = None if c.strategy == "partial" else "none"
        self.unfreeze_every.layout.display = None if c.strategy == "progressive" else "none"
        self.lr_ratio.disabled = self.busy or not self.differential.value
        self.strategy_help.value = f"<i>When to use:</i> {html.escape(ftkit.STRATEGIES[c.strategy])}"
        self.schedule_help.value = f"<i>{html.escape(ftkit.SCHEDULES[c.schedule])}</i>"
        is_image = ftkit.MODELS.get(self.model_name.value, ("image",))[0] == "image"
        self.image_size.disabled = self.busy or not is_image or self._fixed_model is not None
        self._draw_preview(c)
        if not self.busy:
            self._show_layers(c)
        if self.code_button.value:
            self._show_code()

    # --- loading ---------------------------------------------------------------------------------------------
    def _wanted_data_key(self):
        return "given" if self._fixed_data is not None else (self.dataset.value, int(self.subset.value))

    def _wanted_model_key(self, num_classes):
        if self._fixed_model is not None:
            return "given"
        name = self.model_name.value
        size = self.image_size.value if ftkit.MODELS[name][0] == "image" else None
        return (self.framework.value, name, num_classes, size)   # dropout is the run's (FineTuneConfig.dropout)

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
        mkey = self._wanted_model_key(self.data.num_classes)
        if mkey != self._model_key or (fresh and mkey != "given"):
            fw, name, n_classes, size = mkey
            self._say(f"Loading model {name!r} ({fw})...", "info")
            kwargs = {"image_size": size} if size else {}
            model = ftkit.load_model(name, framework=fw, num_classes=n_classes, verbose=False, **kwargs)
            self._use_model(model)
            self._model_key, self._model_trained = mkey, False
        self.model_info.value = (f"<small>{html.escape(self.model.name)}: {html.escape(str(self.model.source))}"
                                 f"<br>{html.escape(repr(self.data))}</small>")
        return self.model, self.data

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
        return plan(config.replace(epochs=1), len(self.model.groups))[0]

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
                first = next((e for e, m in enumerate(plan(config, n)) if m[i]), None)
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
        try:
            n_groups = len(self.model.groups) if self._model_current() else 1
            config.validate(n_groups=n_groups)
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
        masks = plan(config, n_groups)
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
        fresh = self._model_trained and self.fresh.value
        self._load_now(fresh=fresh)
        if self._stop_event.is_set():
            self._say("Stopped before training started.", "warn")
            return
        self._model_trained = True
        run = ftkit.finetune(self.model, self.data, config.replace(progress=False),
                             callbacks=[self._callback, self.live])
        best = run.best_epoch or {}
        acc = best.get("val_accuracy")
        kind = "ok" if run.status in ("finished", "early_stopped", "stopped") else "warn"
        detail = f" {html.escape(run.message)}." if run.message else ""
        score = f" Best val accuracy {acc:.3f}." if acc is not None else ""
        self._say(f"<b>{run.name}</b> {run.status} after {len(run.history['epochs'])} epoch(s), "
                  f"{run.wall_time:.1f} s.{score}{detail}", kind)

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
        self.layermap.disabled = running
        self.train_button.disabled = running
        self.stop_button.disabled = not running

    # --- messages and code ----------------------------------------------------------------------------------
    def _say(self, text, kind="info"):
        colour = _KINDS[kind]
        self.status.value = (f"<div data-kind='{kind}' style='color:{colour};border-left:4px solid {colour};"
                             f"padding:2px 8px;margin:4px 0'>{text}</div>")

    def _show_error(self, error):
        if isinstance(error, ftkit.FtkitError):
            self.error = f"Can't train with these settings: {error}"
            self._say(html.escape(self.error), "error")
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
            args = [repr(self.model_name.value), f"framework={self.framework.value!r}",
                    "num_classes=data.num_classes"]
            if ftkit.MODELS[self.model_name.value][0] == "image":
                args.append(f"image_size={self.image_size.value}")
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
