"""One fine-tuning job through ftkit and through the usual alternatives, side by side.

The job: ImageNet MobileNetV2 with a new 10-class head, full fine-tuning, AdamW,
one epoch over Fashion-MNIST images. Every contender runs in its own fresh
process (so one cannot slow another), gets a short warm-up first, and is timed
over the same images. Prints samples/s and the ratio to the plain PyTorch loop.

    python benchmarks/bench_finetune.py                 # CPU defaults: 512 images, 64 px, batch 64
    python benchmarks/bench_finetune.py --n 16384 --size 96 --batch 256   # a GPU
    python benchmarks/bench_finetune.py --only plain_nchw,ftkit_torch

The alternatives get the images already resized and normalised (float32);
ftkit starts from the raw uint8 28x28 images and does that work itself. ftkit
is timed on the second epoch of a two-epoch run; the others after a warm-up of
three steps (TensorFlow traces its step function then).
"""
import time

import _harness

CONTENDERS = ["plain_nchw", "plain_channels_last", "ftkit_torch", "lightning", "hf_trainer", "plain_tf",
              "keras_fit", "ftkit_tf"]


def fashion(n):
    import ftkit
    d = ftkit.load_dataset("fashion_mnist", verbose=False)
    return d.train.x[:n], d.train.y[:n]


def prepared_tensors(x, y, size, layout="nchw"):
    """Resized, normalised float32 images as the plain loops and trainers take them."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(x).float().div(255).unsqueeze(1)
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    t = ((t - mean) / std).contiguous()
    if layout == "nhwc":
        return t.permute(0, 2, 3, 1).contiguous().numpy(), np.asarray(y)
    return t, torch.from_numpy(np.asarray(y))


def torch_model(device, channels_last):
    import torch
    import ftkit
    m = ftkit.load_model("mobilenet_v2", framework="torch", num_classes=10, verbose=False).native.to(device)
    return m.to(memory_format=torch.channels_last) if channels_last else m


def plain_loop(args, channels_last):
    """A careful hand-written loop: pinned memory, non-blocking copies, bf16 autocast on a GPU, fused AdamW."""
    import torch
    import torch.nn.functional as F
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, y = prepared_tensors(*fashion(args.n), args.size)
    if device.type == "cuda":
        x, y = x.pin_memory(), y.pin_memory()
    model = torch_model(device, channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)   # fused on a GPU and on a CPU
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def epoch(limit=None):
        model.train()
        perm = torch.randperm(len(y))
        seen = 0
        for i, idx in enumerate(perm.split(args.batch)):
            if limit is not None and i >= limit:
                break
            xb = x[idx].to(device, non_blocking=True).contiguous(memory_format=fmt)
            yb = y[idx].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            seen += len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return seen

    epoch(limit=3)
    t = time.perf_counter()
    seen = epoch()
    return seen / (time.perf_counter() - t)


def ftkit_run(args, framework):
    """Two epochs in one run; the second is timed (the first holds the warm-up: TensorFlow's tracing)."""
    import ftkit
    x, y = fashion(args.n)
    data = ftkit.Dataset.from_arrays("fashion", (x, y), (x[:args.batch], y[:args.batch]))
    model = ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=args.size,
                             verbose=False)
    cfg = ftkit.FineTuneConfig(strategy="full", optimizer="adamw", lr=1e-3, epochs=2, batch_size=args.batch,
                               progress=False)
    run = ftkit.finetune(model, data, cfg)
    return run.history["epochs"][1]["samples_per_sec"]


def keras_model(size):
    """The Keras model of plain_tf and keras_fit: MobileNetV2 body, dropout, a 10-class head.

    keras.applications builds it with ``weights=None`` (no network here); the weights do not change the
    time of a step or of a trace.
    """
    import keras
    base = keras.applications.MobileNetV2(weights=None, include_top=False, pooling="avg",
                                          input_shape=(size, size, 3))
    return keras.Sequential([base, keras.layers.Dropout(0.2), keras.layers.Dense(10)])


def plain_tf_step(model):
    """A careful hand-written TensorFlow step: GradientTape in a tf.function, one AdamW."""
    from ftkit import _frameworks
    tf = _frameworks.tensorflow()
    import keras
    opt = keras.optimizers.AdamW(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(reduce_retracing=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss
    return step


def plain_tf_run(args):
    """A careful hand-written TensorFlow loop (see plain_tf_step)."""
    import ftkit  # noqa: F401  (imports triton before TensorFlow)
    from ftkit import _frameworks
    tf = _frameworks.tensorflow()
    x, y = prepared_tensors(*fashion(args.n), args.size, layout="nhwc")
    step = plain_tf_step(keras_model(args.size))

    def epoch(limit=None):
        perm = tf.random.shuffle(tf.range(len(y)))
        seen = 0
        for i in range(0, len(y), args.batch):
            if limit is not None and i // args.batch >= limit:
                break
            idx = perm[i:i + args.batch].numpy()
            float(step(x[idx], y[idx]))
            seen += len(idx)
        return seen

    epoch(limit=3)
    t = time.perf_counter()
    seen = epoch()
    return seen / (time.perf_counter() - t)


def lightning_run(args):
    import lightning as L
    import torch
    import torch.nn.functional as F
    x, y = prepared_tensors(*fashion(args.n), args.size)
    gpu = torch.cuda.is_available()

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = torch_model("cpu", channels_last=False)

        def training_step(self, batch, _):
            return F.cross_entropy(self.model(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    ds = torch.utils.data.TensorDataset(x, y)

    def fit(limit):
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, pin_memory=gpu)
        trainer = L.Trainer(max_epochs=1, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_train_batches=limit,
                            precision="bf16-mixed" if gpu else "32-true")
        t = time.perf_counter()
        trainer.fit(module, loader)
        return time.perf_counter() - t

    module = Module()
    fit(3)
    return len(y) / fit(1.0)


def hf_trainer_run(args):
    import tempfile

    import torch
    import torch.nn.functional as F
    from transformers import Trainer, TrainingArguments
    x, y = prepared_tensors(*fashion(args.n), args.size)
    gpu = torch.cuda.is_available()

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = torch_model("cpu", channels_last=False)

        def forward(self, pixel_values, labels=None):
            logits = self.model(pixel_values)
            return {"loss": F.cross_entropy(logits, labels), "logits": logits}

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return {"pixel_values": x[i], "labels": y[i]}

    model = Wrapped()

    def fit(n):
        targs = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch,
                                  num_train_epochs=1, max_steps=n, report_to=[], save_strategy="no",
                                  logging_strategy="no", bf16=gpu, use_cpu=not gpu, learning_rate=1e-3,
                                  optim="adamw_torch_fused" if gpu else "adamw_torch", disable_tqdm=True,
                                  dataloader_pin_memory=gpu)
        t = time.perf_counter()
        Trainer(model=model, args=targs, train_dataset=DS()).train()
        return time.perf_counter() - t

    fit(3)
    steps = -(-len(y) // args.batch)
    return len(y) / fit(steps)


def keras_fit_run(args):
    import ftkit  # noqa: F401  (imports triton before TensorFlow)
    from ftkit import _frameworks
    _frameworks.tensorflow()
    import keras
    x, y = prepared_tensors(*fashion(args.n), args.size, layout="nhwc")
    model = keras_model(args.size)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:3 * args.batch], y[:3 * args.batch], batch_size=args.batch, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)
    return len(y) / (time.perf_counter() - t)


def one(name, args):
    fns = {"plain_nchw": lambda: plain_loop(args, False), "plain_channels_last": lambda: plain_loop(args, True),
           "ftkit_torch": lambda: ftkit_run(args, "torch"), "ftkit_tf": lambda: ftkit_run(args, "tf"),
           "lightning": lambda: lightning_run(args), "hf_trainer": lambda: hf_trainer_run(args),
           "keras_fit": lambda: keras_fit_run(args), "plain_tf": lambda: plain_tf_run(args)}
    return fns[name]()


def main():
    args, results = _harness.main(__file__, __doc__, CONTENDERS, one, n=512, size=64, batch=64, what="images",
                                  width=22)
    base = results.get("plain_nchw")
    best_torch = max(results.get("plain_nchw", 0), results.get("plain_channels_last", 0))
    best_tf = results.get("plain_tf", 0)
    print(f"\n{'contender':<22}{'samples/s':>10}{'/ plain NCHW':>14}{'/ best plain loop of its framework':>36}")
    for name, v in results.items():
        own = best_tf if name in ("plain_tf", "keras_fit", "ftkit_tf") else best_torch
        r1 = f"{v / base:.2f}x" if base else "-"
        r2 = f"{v / own:.2f}x" if own else "-"
        print(f"{name:<22}{v:10.1f}{r1:>14}{r2:>36}")
    print("\n" + _harness.machine(args, "images"))


if __name__ == "__main__":
    main()
