"""Start-up cost of a fine-tuning call: time to the first optimizer step, first call and repeated call.

The job is bench_finetune.py's: ImageNet MobileNetV2 with a new 10-class head,
full fine-tuning, AdamW (lr 1e-3), one epoch over Fashion-MNIST images per call.
Each contender runs in its own fresh process, with the model already built
(loading it is not timed), and makes two calls on the same model object:

* call 1: the first call on a fresh model in a fresh process (TensorFlow traces here);
* call 2: the same model again, in the same process.

For each call it measures the time from the call's start to the end of the
first optimizer step, and the time of the whole call; the steady-state
samples/s come from call 2's steps after the first
(samples after the first batch / time from the end of the first step to the end of the last).

    python benchmarks/bench_startup.py                      # CPU defaults: 512 images, 64 px, batch 64
    python benchmarks/bench_startup.py --only ftkit_tf,keras_fit --json startup.json

What one call is, per contender:

* ftkit_torch, ftkit_tf: ``ftkit.finetune(model, data, strategy="full", epochs=1, ...)``, timed by a
  ``ftkit.Callback``. The call starts from the raw uint8 28x28 images and includes what finetune
  does around the steps (trainer set-up, the validation pass over one batch, weight snapshots).
* plain_torch: bench_finetune's careful loop, channels_last; one call is one epoch (the optimizer
  is made once, before call 1, as a hand-written loop would).
* plain_tf: bench_finetune's ``GradientTape`` step in a ``tf.function``; one call is one epoch,
  the step function and optimizer are made once, before call 1 (so call 2 reuses the trace).
* keras_fit: ``model.compile`` once, then one ``model.fit(..., epochs=1)`` per call, timed by a
  ``keras.callbacks.Callback.on_train_batch_end``.

The plain loops and Keras fit get the images already resized and normalised (as in bench_finetune).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_finetune import fashion, keras_model, plain_tf_step, prepared_tensors, torch_model  # noqa: E402

CONTENDERS = ["plain_torch", "ftkit_torch", "plain_tf", "keras_fit", "ftkit_tf"]


def _call_stats(t0, step_ends, t_end, n, batch):
    """One call's figures from its start, the end time of each optimizer step and its end."""
    first = step_ends[0] - t0
    steady = None
    if len(step_ends) > 1 and step_ends[-1] > step_ends[0]:
        steady = (n - min(batch, n)) / (step_ends[-1] - step_ends[0])
    return {"first_step_s": first, "whole_s": t_end - t0, "steps": len(step_ends), "steady_samples_per_sec": steady,
            "step_ends_s": [round(t - t0, 4) for t in step_ends]}


# -- ftkit ---------------------------------------------------------------------------------------------------
def ftkit_calls(args, framework):
    import ftkit

    class StepTimes(ftkit.Callback):
        def __init__(self):
            self.ends = []

        def on_step_end(self, run, record):
            self.ends.append(time.perf_counter())

    x, y = fashion(args.n)
    data = ftkit.Dataset.from_arrays("fashion", (x, y), (x[:args.batch], y[:args.batch]))  # as bench_finetune
    model = ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=args.size,
                             verbose=False)
    calls = []
    for _ in range(2):
        cb = StepTimes()
        t0 = time.perf_counter()
        ftkit.finetune(model, data, strategy="full", optimizer="adamw", epochs=1, lr=1e-3, batch_size=args.batch,
                       progress=False, callbacks=[cb])
        calls.append(_call_stats(t0, cb.ends, time.perf_counter(), len(y), args.batch))
    return calls


# -- plain PyTorch loop (bench_finetune's plain_loop, channels_last, instrumented) ----------------------------
def plain_torch_calls(args):
    import ftkit  # noqa: F401  (first, as everywhere)
    import torch
    import torch.nn.functional as F
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    x, y = prepared_tensors(*fashion(args.n), args.size)
    if cuda:
        x, y = x.pin_memory(), y.pin_memory()
    model = torch_model(device, channels_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, **({"fused": True} if cuda else {}))

    def call():
        t0 = time.perf_counter()
        ends = []
        model.train()
        for idx in torch.randperm(len(y)).split(args.batch):
            xb = x[idx].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            yb = y[idx].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if cuda and not ends:
                torch.cuda.synchronize()   # the first step's end is a real end
            ends.append(time.perf_counter())
        if cuda:
            torch.cuda.synchronize()
            ends[-1] = time.perf_counter()
        return _call_stats(t0, ends, time.perf_counter(), len(y), args.batch)

    return [call(), call()]


# -- TensorFlow / Keras ---------------------------------------------------------------------------------------
def _tf():
    import ftkit  # noqa: F401  (imports triton before TensorFlow)
    from ftkit import _frameworks
    return _frameworks.tensorflow()


def plain_tf_calls(args):
    """bench_finetune's plain_tf_run, instrumented: the step is a tf.function made once, before call 1."""
    tf = _tf()
    x, y = prepared_tensors(*fashion(args.n), args.size, layout="nhwc")
    step = plain_tf_step(keras_model(args.size))

    def call():
        t0 = time.perf_counter()
        ends = []
        perm = tf.random.shuffle(tf.range(len(y)))
        for i in range(0, len(y), args.batch):
            idx = perm[i:i + args.batch].numpy()
            float(step(x[idx], y[idx]))
            ends.append(time.perf_counter())
        return _call_stats(t0, ends, time.perf_counter(), len(y), args.batch)

    return [call(), call()]


def keras_fit_calls(args):
    _tf()
    import keras

    class StepTimes(keras.callbacks.Callback):
        """Overriding on_train_batch_end also turns off Keras' async dispatch: each step has ended here."""

        def __init__(self):
            super().__init__()
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    x, y = prepared_tensors(*fashion(args.n), args.size, layout="nhwc")
    model = keras_model(args.size)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    calls = []
    for _ in range(2):
        cb = StepTimes()
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, callbacks=[cb])
        calls.append(_call_stats(t0, cb.ends, time.perf_counter(), len(y), args.batch))
    return calls


def one(name, args):
    import ftkit  # noqa: F401  (before anything that may import TensorFlow)
    fns = {"plain_torch": lambda: plain_torch_calls(args), "ftkit_torch": lambda: ftkit_calls(args, "torch"),
           "plain_tf": lambda: plain_tf_calls(args), "keras_fit": lambda: keras_fit_calls(args),
           "ftkit_tf": lambda: ftkit_calls(args, "tf")}
    return fns[name]()


# -- the table ------------------------------------------------------------------------------------------------
def _f(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)


def table(results):
    keras = results.get("keras_fit")
    k1 = keras[0]["first_step_s"] if keras else None
    k2 = keras[1]["first_step_s"] if keras else None
    lines = ["| contender | first step call 1 (s) | whole call 1 (s) | first step call 2 (s) | whole call 2 (s) "
             "| steady samples/s | first step call 1 / Keras fit's | first step call 2 / Keras fit's |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, (c1, c2) in results.items():
        r1 = c1["first_step_s"] / k1 if k1 else None
        r2 = c2["first_step_s"] / k2 if k2 else None
        lines.append(f"| {name} | {_f(c1['first_step_s'])} | {_f(c1['whole_s'])} | {_f(c2['first_step_s'])} "
                     f"| {_f(c2['whole_s'])} | {_f(c2['steady_samples_per_sec'], '{:.1f}')} "
                     f"| {_f(r1, '{:.2f}x')} | {_f(r2, '{:.2f}x')} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=512, help="training images (one epoch per call)")
    p.add_argument("--size", type=int, default=64, help="image size the network sees")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated: " + ",".join(CONTENDERS))
    p.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps({"calls": one(args.one, args)}))
        return
    names = args.only.split(",")
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        p.error(f"unknown contender(s) {unknown}; choose from {CONTENDERS}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"note: the load average is {load:.1f}; other work on this machine will slow every figure",
              file=sys.stderr)
    results = {}
    for name in names:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", name, "--n", str(args.n), "--size",
               str(args.size), "--batch", str(args.batch)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if r.returncode or not line:
            print(f"{name}: failed\n{r.stderr[-1500:]}", file=sys.stderr)
            continue
        results[name] = c1, c2 = json.loads(line[-1])["calls"]
        print(f"{name:<14} call 1: first step {c1['first_step_s']:6.2f} s, whole {c1['whole_s']:6.2f} s;  "
              f"call 2: first step {c2['first_step_s']:6.2f} s, whole {c2['whole_s']:6.2f} s", flush=True)
    where = platform.processor() or platform.machine()
    print()
    print(table(results))
    print(f"\n{args.n} images, {args.size} px, batch {args.batch}, one epoch per call; steady samples/s from "
          f"call 2's steps after the first; {where}, {os.cpu_count()} CPUs, load average {load:.1f} at the start")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": args.n, "size": args.size, "batch": args.batch, "machine": where, "load_average": load,
                       "results": {k: {"call1": v[0], "call2": v[1]} for k, v in results.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
