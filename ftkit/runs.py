"""Saving runs to a folder and loading them back.

A run folder holds ``config.json`` (the FineTuneConfig), ``run.json`` (format
version, model, dataset, framework, status, history) and ``weights.safetensors``: every weight, or,
for a peft run on a pre-trained model, only what it changed (the head, the LoRA adapters or the biases,
BatchNorm statistics), which ``load_run`` puts back onto the pre-trained model (see ftkit.peft.saved_parts).
Nothing is pickled and nothing in the folder is executed: loading reads JSON and
safetensors only. Every unreadable or corrupt file is reported as a
:class:`~ftkit.errors.RunFolderError` that names the file and what is wrong.
"""
import json
import os

from .config import FineTuneConfig
from .errors import FtkitError, RunFolderError

WEIGHTS = "weights.safetensors"
FORMAT_VERSION = 1   # of run.json; raise it when the folder layout changes
RUN_KEYS = ("format_version", "name", "model", "framework", "dataset", "num_classes", "status", "message",
            "input_spec", "history")


def save_run(run, path):
    """Write ``run`` to the folder ``path`` (created if missing); returns the path."""
    from .peft import saved_parts
    os.makedirs(path, exist_ok=True)
    model = run.model
    parts = saved_parts(run)
    meta = {"format_version": FORMAT_VERSION, "name": run.name, "model": run.model_name,
            "framework": run.framework, "dataset": run.dataset_name, "num_classes": model.num_classes,
            "task": model.task, "group_names": run.group_names, "status": run.status, "message": run.message,
            "kept": run.kept,
            "notes": run.notes, "head_dropout": run.dropout, "device": run.device, "precision": run.precision,
            "input_spec": {k: v for k, v in model.input_spec.items() if k != "tokenizer"},
            "history": run.history, "test_metrics": run.test_metrics,
            "weights": "all" if parts is None else sorted(parts), "lora": model.lora}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(run.config.to_dict(), f, indent=2)
    with open(os.path.join(path, "run.json"), "w") as f:
        json.dump(meta, f, indent=2, default=float)
    model.backend.io.save_weights(model, os.path.join(path, WEIGHTS), parts)
    return path


class SavedRun:
    """A run read back from disk: config, history and the model with its trained weights."""

    def __init__(self, path, meta, config, model):
        self.path, self.config, self.model = path, config, model
        self.name, self.status, self.message = meta["name"], meta["status"], meta["message"]
        self.model_name, self.framework, self.dataset_name = meta["model"], meta["framework"], meta["dataset"]
        self.history, self.test_metrics = meta["history"], meta.get("test_metrics")
        self.kept, self.notes = meta.get("kept"), meta.get("notes", [])

    def __repr__(self):
        return f"SavedRun({self.path!r}, {self.model_name}/{self.framework}, {self.status})"


def _read_json(path, name):
    """The JSON object in ``path/name``, or a RunFolderError naming the file and the problem."""
    file = os.path.join(path, name)
    try:
        with open(file, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RunFolderError(f"{file}: not a text file ({e.reason} at byte {e.start}); it is corrupt or not "
                             f"written by ftkit") from None
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{file}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except OSError as e:
        raise RunFolderError(f"{file}: cannot be read ({e.strerror})") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{file}: expected a JSON object, found {type(data).__name__}")
    return data


def _check_meta(file, meta):
    version = meta.get("format_version")
    if version is None:
        raise RunFolderError(f"{file}: no format_version: the folder was written by an older ftkit (before run "
                             f"format {FORMAT_VERSION}); re-run it with this ftkit")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise RunFolderError(f"{file}: run format {version!r} was written by a newer ftkit; this ftkit reads "
                             f"format {FORMAT_VERSION}: upgrade ftkit (pip install -U ftkit)")
    if version < FORMAT_VERSION:
        raise RunFolderError(f"{file}: run format {version} is older than this ftkit's {FORMAT_VERSION}; "
                             f"re-run it with this ftkit")
    missing = [k for k in RUN_KEYS if k not in meta]
    if missing:
        raise RunFolderError(f"{file}: missing {', '.join(missing)}")
    if not isinstance(meta["input_spec"], dict) or not isinstance(meta["history"], dict):
        raise RunFolderError(f"{file}: input_spec and history must be JSON objects")


def _check_weights(file):
    """Read the safetensors header (JSON, no code) so a corrupt file is named before any model is built."""
    from safetensors import safe_open
    try:
        with safe_open(file, framework="numpy") as f:
            f.keys()
    except Exception as e:   # safetensors raises its own SafetensorError and OSError variants
        raise RunFolderError(f"{file}: not a readable safetensors file ({e}); it is corrupt or truncated") \
            from None


def load_run(path, framework=None):
    """Read a run folder; the model is rebuilt and its saved weights loaded.

    ``framework`` defaults to the one it was trained with.
    """
    from .models import load_model
    if not os.path.isdir(path):
        raise RunFolderError(f"{path!r} is not a folder")
    for f in ("config.json", "run.json", WEIGHTS):
        if not os.path.exists(os.path.join(path, f)):
            raise RunFolderError(f"{path!r} is not a ftkit run folder: {f} is missing")
    run_file, config_file, weights_file = (os.path.join(path, f) for f in ("run.json", "config.json", WEIGHTS))
    meta = _read_json(path, "run.json")
    _check_meta(run_file, meta)
    try:
        config = FineTuneConfig.from_dict(_read_json(path, "config.json"))
        config.validate()
    except RunFolderError:
        raise
    except (FtkitError, TypeError) as e:
        raise RunFolderError(f"{config_file}: {e}") from None
    _check_weights(weights_file)
    fw = framework or meta["framework"]
    if fw != meta["framework"]:
        raise RunFolderError(f"{run_file}: this run was trained with framework={meta['framework']!r}; its weights "
                             f"cannot be loaded into {fw!r}")
    spec = meta["input_spec"]
    dropout = meta.get("head_dropout")
    parts, lora = meta.get("weights", "all"), meta.get("lora")
    if not (parts == "all" or isinstance(parts, list)) or not (lora is None or isinstance(lora, dict)):
        raise RunFolderError(f"{run_file}: weights must be 'all' or a list of parts, lora null or an object")
    try:   # a peft run saved only what it changed: it goes back onto the pre-trained model
        model = load_model(meta["model"], framework=fw, num_classes=meta["num_classes"],
                           task=meta.get("task", "classification"), pretrained=parts != "all",
                           dropout=0.2 if dropout is None else dropout, image_size=spec.get("image_size"),
                           max_length=spec.get("max_length", 64), stride=spec.get("stride"), verbose=False)
        if lora is not None:   # the same adapters (their values are loaded next)
            from .peft import add_lora
            add_lora(model, lora["rank"], lora["alpha"], lora["targets"], seed=0)
    except FtkitError as e:
        raise RunFolderError(f"{run_file}: cannot rebuild the model: {e}") from None
    if lora is not None and model.lora["paths"] != lora.get("paths"):
        raise RunFolderError(f"{run_file}: the LoRA targets {lora['targets']!r} now match other layers than "
                             "when the run was saved")
    try:
        model.backend.io.load_weights(model, weights_file, None if parts == "all" else set(parts))
    except Exception as e:   # missing/unexpected keys or shapes: the file does not belong to this model
        raise RunFolderError(f"{weights_file}: does not match model {meta['model']!r} ({e})") from None
    model.fresh_head = False   # the head holds trained weights
    if parts != "all":
        model.trained = {"head", *(p for p in parts if p in ("lora", "bias"))}
    return SavedRun(path, meta, config, model)
