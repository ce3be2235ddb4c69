"""What a training setting costs: samples per second and peak memory, measured in a fresh process.

``measure("mobilenet_v2", "fashion_mnist", FineTuneConfig(grad_checkpointing=True))`` trains a few
steps of a newly loaded model in a new Python process and reports

* ``samples_per_sec``: training throughput after the first step (which includes set-up, and
  TensorFlow's tracing);
* ``peak_memory_mb`` and ``memory``, what that number is: on a GPU the framework's peak allocated
  memory (PyTorch ``max_memory_allocated``, TensorFlow ``get_memory_info(...)["peak"]``); on a CPU
  the peak resident memory of the process during training (Linux: its high-water mark, reset
  after the model and data are loaded), so the model's weights are included in both.

A process of its own gives each setting a clean peak: memory a process once held is not handed
back, so two settings measured one after the other in one process would not be comparable.
Mixed precision, gradient accumulation and gradient checkpointing (notebook 11) are compared this way.
"""
import json
import subprocess
import sys
import time

from .config import FineTuneConfig
from .data import DATASETS
from .errors import ConfigError, choose, whole_number
from .models import MODELS
from .training import Callback

_MARK = "FTKIT_MEASURE "


def measure(model, dataset, config=None, *, framework="torch", subset=None, steps=6, image_size=None,
            max_length=64, timeout=600):
    """Train ``steps`` optimizer steps of ``load_model(model, framework)`` on ``load_dataset(dataset)``
    (``subset``: examples per class) with ``config`` in a new Python process; returns a dict with
    ``samples_per_sec``, ``peak_memory_mb``, ``memory`` (what was measured), ``device``, ``precision``,
    ``steps`` and ``notes`` (the run's notes, e.g. a precision fallback on a CPU)."""
    choose("model", model, list(MODELS))
    choose("dataset", dataset, list(DATASETS))
    choose("framework", framework, ["torch", "tf"])
    whole_number("steps", steps, 2, " (the first step is not timed)")
    config = (config or FineTuneConfig()).replace(epochs=1, max_steps_per_epoch=steps, progress=False)
    config.validate()
    args = {"model": model, "dataset": dataset, "framework": framework, "subset": subset, "config": config.to_dict(),
            "image_size": image_size, "max_length": max_length}
    code = f"from ftkit.efficiency import _child; _child({json.dumps(json.dumps(args))})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the measuring process failed (exit code {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(_MARK):])


class _StepTimes(Callback):
    """Notes when each optimizer step ends."""

    def __init__(self):
        self.times = []

    def on_step_end(self, run, record):
        self.times.append(time.perf_counter())


def _status_kb(field):
    """A field of /proc/self/status in kB (Linux), e.g. VmHWM, the peak resident memory."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _child(args_json):
    """The measuring process: load, reset the peak, train, print the figures after ``_MARK``."""
    import ftkit
    args = json.loads(args_json)
    config = FineTuneConfig.from_dict(args["config"])
    data = ftkit.load_dataset(args["dataset"], verbose=False)   # a few validation examples: not what is measured
    data = data.subset(args["subset"] or len(data.train), per_class=bool(args["subset"]), eval_n=2)
    model = ftkit.load_model(args["model"], framework=args["framework"], num_classes=data.num_classes,
                             image_size=args["image_size"], max_length=args["max_length"], verbose=False)
    device = ftkit.device_info(args["framework"], config)["device"]
    fw = args["framework"]
    if device == "cuda" and fw == "torch":
        import torch
        torch.cuda.reset_peak_memory_stats()
        what = "PyTorch's peak allocated GPU memory (torch.cuda.max_memory_allocated)"
    elif device == "cuda":
        tf = ftkit._frameworks.tensorflow()
        tf.config.experimental.reset_memory_stats("GPU:0")
        what = "TensorFlow's peak allocated GPU memory (get_memory_info('GPU:0')['peak'])"
    else:
        try:   # "5" resets the process's peak resident memory to its current one (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            _status_kb("VmHWM")
            what = "the process's peak resident memory while training (CPU; model and data included)"
        except OSError:
            what = "the process's peak resident memory since it started (CPU; loading included)"
    times = _StepTimes()
    run = ftkit.finetune(model, data, config, callbacks=[times])
    if device == "cuda" and fw == "torch":
        peak = torch.cuda.max_memory_allocated() / 2 ** 20
    elif device == "cuda":
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
    elif "while training" in what:
        peak = _status_kb("VmHWM") / 1024
    else:   # ru_maxrss is in kB on Linux, in bytes on macOS
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2 ** 20 if sys.platform == "darwin" else 1024)
    epoch = run.history["epochs"][0]
    per_step = epoch["samples_per_sec"] * epoch["wall_time"] / max(1, len(times.times))
    timed = times.times[-1] - times.times[0] if len(times.times) > 1 else float("nan")
    print(_MARK + json.dumps({"samples_per_sec": per_step * (len(times.times) - 1) / timed, "peak_memory_mb": peak,
                              "memory": what, "device": device, "precision": run.precision,
                              "steps": len(times.times), "notes": run.notes}), flush=True)
