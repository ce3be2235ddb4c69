"""Saving runs to a folder and loading them back.

A run folder holds ``config.json`` (the FineTuneConfig), ``run.json`` (model,
dataset, framework, status, history) and ``weights.safetensors``. Nothing is
pickled, so loading a run never executes code from the file.
"""
import json
import os

from .config import FineTuneConfig
from .errors import ConfigError

WEIGHTS = "weights.safetensors"


def save_run(run, path):
    """Write ``run`` to the folder ``path`` (created if missing); returns the path."""
    os.makedirs(path, exist_ok=True)
    model = run.model
    meta = {"name": run.name, "model": run.model_name, "framework": run.framework, "dataset": run.dataset_name,
            "num_classes": model.num_classes, "group_names": run.group_names, "status": run.status,
            "message": run.message, "device": run.device, "precision": run.precision,
            "input_spec": {k: v for k, v in model.input_spec.items() if k != "tokenizer"},
            "history": run.history, "test_metrics": run.test_metrics}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(run.config.to_dict(), f, indent=2)
    with open(os.path.join(path, "run.json"), "w") as f:
        json.dump(meta, f, indent=2, default=float)
    model.backend.io.save_weights(model, os.path.join(path, WEIGHTS))
    return path


class SavedRun:
    """A run read back from disk: config, history and the model with its trained weights."""

    def __init__(self, path, meta, config, model):
        self.path, self.config, self.model = path, config, model
        self.name, self.status, self.message = meta["name"], meta["status"], meta["message"]
        self.model_name, self.framework, self.dataset_name = meta["model"], meta["framework"], meta["dataset"]
        self.history, self.test_metrics = meta["history"], meta.get("test_metrics")

    def __repr__(self):
        return f"SavedRun({self.path!r}, {self.model_name}/{self.framework}, {self.status})"


def load_run(path, framework=None):
    """Read a run folder; the model is rebuilt and its saved weights loaded.

    ``framework`` defaults to the one it was trained with.
    """
    from .models import load_model
    for f in ("config.json", "run.json", WEIGHTS):
        if not os.path.exists(os.path.join(path, f)):
            raise ConfigError(f"{path!r} is not a ftkit run folder: {f} is missing")
    with open(os.path.join(path, "config.json")) as f:
        config = FineTuneConfig.from_dict(json.load(f))
    with open(os.path.join(path, "run.json")) as f:
        meta = json.load(f)
    fw = framework or meta["framework"]
    if fw != meta["framework"]:
        raise ConfigError(f"this run was trained with framework={meta['framework']!r}; weights cannot be "
                          f"loaded into {fw!r}")
    spec = meta["input_spec"]
    model = load_model(meta["model"], framework=fw, num_classes=meta["num_classes"], pretrained=False,
                       dropout=config.dropout, image_size=spec.get("image_size"),
                       max_length=spec.get("max_length", 64), verbose=False)
    model.backend.io.load_weights(model, os.path.join(path, WEIGHTS))
    return SavedRun(path, meta, config, model)
