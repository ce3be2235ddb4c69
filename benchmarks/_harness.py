"""What the benchmarks share: their command line, and running each contender in a fresh process.

A benchmark script defines ``one(name, args)`` (run one contender in this process and return its samples/s)
and calls :func:`main`; it runs the script again with ``--one NAME`` for every contender and repeat,
interleaved (A B A B ...) so that a drift of the machine hits every contender alike, and keeps the best.
"""
import argparse
import json
import os
import subprocess
import sys
import time


def parse(doc, contenders, n, size, batch, what):
    """The command line every benchmark takes; ``what`` names the samples (images, scenes)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=n, help=f"training {what} (one epoch)")
    p.add_argument("--size", type=int, default=size, help="image side in pixels")
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--repeats", type=int, default=1, help="runs per contender, interleaved; the best is kept")
    p.add_argument("--only", default=",".join(contenders))
    p.add_argument("--one", help=argparse.SUPPRESS)
    return p.parse_args()


def main(script, doc, contenders, one, *, n, size, batch, what, width=14, unit="samples/s"):
    """Parse the command line; with ``--one`` run that contender here and print its result as JSON,
    else run every contender in fresh processes and return ``(args, {name: best samples/s})`` (``unit``:
    what a contender's number counts, for the progress lines)."""
    args = parse(doc, contenders, n, size, batch, what)
    if args.one:
        print(json.dumps({"samples_per_sec": one(args.one, args)}))
        sys.exit(0)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    names, results, failed = args.only.split(","), {}, set()
    for _ in range(args.repeats):
        for name in names:
            if name in failed:
                continue
            cmd = [sys.executable, script, "--one", name, "--n", str(args.n), "--size", str(args.size),
                   "--batch", str(args.batch)]
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
            if r.returncode or not line:
                print(f"{name}: failed\n{r.stderr[-1500:]}", file=sys.stderr)
                failed.add(name)
                continue
            value = json.loads(line[-1])["samples_per_sec"]
            results[name] = max(results.get(name, 0.0), value)
            print(f"{name:<{width}}{value:10.1f} {unit}", flush=True)
    return args, results


def machine(args, what):
    import platform
    return (f"{args.n} {what}, --size {args.size}, batch {args.batch}, best of {args.repeats} (interleaved); "
            f"{platform.processor() or platform.machine()}")


def generated_tokens(texts, model):
    """Generated tokens, the end token included, of every text a seq2seq or captioning ``model`` wrote."""
    from ftkit.tasks.seq2seq import tokenizer
    tok = tokenizer(model)
    return sum(min(len(e.ids) - 1, model.input_spec["max_length"]) for e in tok.encode_batch(texts))


def decode_rate(model, inputs, batch):
    """Tokens per second of ``ftkit.generate`` (greedy) over ``inputs``, after a warm-up on one batch."""
    import ftkit
    config = ftkit.FineTuneConfig(batch_size=batch, progress=False)
    ftkit.generate(model, inputs[:batch], config=config)
    t = time.perf_counter()
    texts = ftkit.generate(model, inputs, config=config)
    return generated_tokens(texts, model) / (time.perf_counter() - t)


GENERATION = ["train_reference", "train_ftkit_torch", "train_ftkit_tf", "decode_hf", "decode_ftkit_torch",
              "decode_ftkit_tf"]


def generation_main(script, doc, what, train_reference, train_ftkit, decode_hf, decode_ftkit, **defaults):
    """A generation benchmark's command line (``main``) over its six contenders (GENERATION): the reference
    training loop, ftkit's in each framework, transformers' ``generate`` and ftkit's in each framework; then
    its table (:func:`report_generation`)."""
    def one(name, args):
        return {"train_reference": lambda: train_reference(args),
                "train_ftkit_torch": lambda: train_ftkit(args, "torch"),
                "train_ftkit_tf": lambda: train_ftkit(args, "tf"), "decode_hf": lambda: decode_hf(args),
                "decode_ftkit_torch": lambda: decode_ftkit(args, "torch"),
                "decode_ftkit_tf": lambda: decode_ftkit(args, "tf")}[name]()
    args, results = main(script, doc, GENERATION, one, what=what, width=20, unit="per s", **defaults)
    report_generation(args, results, what)


def report_generation(args, results, what):
    """The table of a generation benchmark: training samples/s against ``train_reference``, decoding tokens/s
    against ``decode_hf``, and TensorFlow's decoding against PyTorch's."""
    print(f"\n{'contender':<20}{'per s':>10}{'/ reference':>14}   (training: samples/s; decoding: tokens/s)")
    for name, v in results.items():
        base = results.get("train_reference" if name.startswith("train") else "decode_hf")
        print(f"{name:<20}{v:10.1f}{(f'{v / base:.2f}x' if base else '-'):>14}")
    if "decode_ftkit_tf" in results and "decode_ftkit_torch" in results:
        print(f"TensorFlow / PyTorch decoding: {results['decode_ftkit_tf'] / results['decode_ftkit_torch']:.2f}x")
    print("\n" + machine(args, what) + " (--size: max_length in tokens)")
