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
