"""Detection training through ftkit and through torchvision's reference-style loop, side by side.

The job: the RetinaNet of ``load_model("mobilenet_v2", task="detection")`` (ImageNet MobileNetV2, feature
pyramid, GroupNorm heads), full fine-tuning, AdamW (lr 1e-3), one epoch over ftkit's Fashion-MNIST scenes.
Each contender runs in its own fresh process, and the ratio of samples/s is printed:

* ``reference``: the loop of torchvision's ``references/detection/engine.py`` (``train_one_epoch``):
  a list of float images and a list of target dicts, ``loss_dict = model(images, targets)``,
  ``sum(loss_dict.values())``, backward, step; bf16 autocast on a GPU. It calls torchvision's own
  ``RetinaNet.forward`` on the same network, with images already scaled and normalised, on the device;
* ``ftkit_torch``: ``ftkit.finetune`` on the raw uint8 scenes (it scales and normalises them itself),
  timed on the second epoch of a two-epoch run (the record's samples/s);
* ``ftkit_tf`` (``--only`` it): the same through TensorFlow, for information.

    python benchmarks/bench_detection.py                       # CPU: 256 scenes, 128 px, batch 16
    python benchmarks/bench_detection.py --n 4096 --batch 64   # a GPU
"""
import time

import _harness

CONTENDERS = ["reference", "ftkit_torch"]


def scenes(n, size):
    from ftkit.data import _fashion_mnist_arrays
    from ftkit.scenes import compose_scenes
    (x, y), _, _ = _fashion_mnist_arrays()
    return compose_scenes(x, y, n, size=size, seed=0)


def reference(args):
    import torch
    import ftkit
    from ftkit.backends.torch import data as tdata
    from torchvision.models.detection import RetinaNet
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, y = scenes(args.n, args.size)
    model = ftkit.load_model("mobilenet_v2", task="detection", num_classes=10, image_size=args.size, verbose=False)
    net = model.native.to(device)
    images = tdata.prepare(model, torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).to(device)
    targets = [{"boxes": torch.from_numpy(t["boxes"]).to(device), "labels": torch.from_numpy(t["labels"]).to(device)}
               for t in y]
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01, fused=True)

    def epoch(limit=None):
        net.train()
        order = torch.randperm(len(targets)).split(args.batch)
        for i, idx in enumerate(order):
            if limit is not None and i >= limit:
                break
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                losses = RetinaNet.forward(net, list(images[idx]), [targets[j] for j in idx.tolist()])
                loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    epoch(limit=3)
    t = time.perf_counter()
    epoch()
    return len(targets) / (time.perf_counter() - t)


def ftkit_run(args, framework):
    import ftkit
    x, y = scenes(args.n, args.size)
    data = ftkit.Dataset.from_arrays("scenes", (x, y), (x[:16], y[:16]), task="detection",
                                     class_names=[str(i) for i in range(10)])
    model = ftkit.load_model("mobilenet_v2", framework=framework, task="detection", num_classes=10,
                             image_size=args.size, verbose=False)
    run = ftkit.finetune(model, data, epochs=2, lr=1e-3, batch_size=args.batch, progress=False)
    return run.history["epochs"][-1]["samples_per_sec"]


def one(name, args):
    return {"reference": lambda: reference(args), "ftkit_torch": lambda: ftkit_run(args, "torch"),
            "ftkit_tf": lambda: ftkit_run(args, "tf")}[name]()


def main():
    args, results = _harness.main(__file__, __doc__, CONTENDERS, one, n=256, size=128, batch=16, what="scenes")
    base = results.get("reference")
    print(f"\n{'contender':<14}{'samples/s':>10}{'/ reference loop':>18}")
    for name, v in results.items():
        print(f"{name:<14}{v:10.1f}{(f'{v / base:.2f}x' if base else '-'):>18}")
    print("\n" + _harness.machine(args, "scenes"))


if __name__ == "__main__":
    main()
