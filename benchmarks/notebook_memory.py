"""Run notebooks as a learner's small machine would: each in its own process, under a real memory limit.

    python benchmarks/notebook_memory.py 22_question_answering 23_object_detection --framework tf
    python benchmarks/notebook_memory.py --all --framework torch --limit-gb 2 --profile cpu

mybinder.org gives a session at most 2 GB, enforced by the kernel (a cgroup memory limit: resident memory and
page cache together, reclaiming the cache before it kills). Peak resident memory alone overstates what a
TensorFlow process needs: about 0.7 GB of it is the shared libraries' code, file pages the kernel can drop and
read again. So this script puts each notebook's ``jupyter nbconvert --execute`` (and so its kernel) in a fresh
memory cgroup with that limit, where the machine allows it (root, cgroup v1 or v2), and reports for each:
wall time, the peak resident memory of its largest process, the cgroup's peak charge, and whether it finished
(every cell ran, the claims' assertions included) or was killed at the limit. Without cgroups it runs
unlimited and says so. Under a limit, MEM_LIMIT holds it too, as on mybinder.org, so a notebook's setup sees a
small machine and uses its cpu profile's smaller sizes where it has them (ftkit.notebook). Executed notebooks go
to a temporary folder (``--keep DIR`` keeps them, with their outputs); nothing in notebooks/ changes.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

NOTEBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "notebooks")


def _memory_cgroup(limit_bytes):
    """Create a memory cgroup limited to ``limit_bytes`` (no swap); returns (tasks file, peak reader,
    killed reader, remove) or None where cgroups cannot be used here."""
    try:
        lines = open("/proc/self/cgroup").read().splitlines()
    except OSError:
        return None
    v1 = [line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory"]
    name = f"ftkit-nb-{os.getpid()}-{time.monotonic_ns()}"
    try:
        if v1:
            path = os.path.join("/sys/fs/cgroup/memory", v1[0].lstrip("/"), name)
            os.mkdir(path)
            open(os.path.join(path, "memory.limit_in_bytes"), "w").write(str(limit_bytes))
            try:
                open(os.path.join(path, "memory.memsw.limit_in_bytes"), "w").write(str(limit_bytes))
            except OSError:
                pass   # no swap accounting: there is no swap to limit
            peak_file, tasks = "memory.max_usage_in_bytes", "tasks"

            def killed():
                stat = open(os.path.join(path, "memory.oom_control")).read().split()
                return int(stat[stat.index("oom_kill") + 1]) if "oom_kill" in stat else 0
        else:
            v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
            path = os.path.join("/sys/fs/cgroup", v2[0].lstrip("/"), name)
            os.mkdir(path)
            open(os.path.join(path, "memory.max"), "w").write(str(limit_bytes))
            open(os.path.join(path, "memory.swap.max"), "w").write("0")
            peak_file, tasks = "memory.peak", "cgroup.procs"

            def killed():
                events = dict(line.split() for line in open(os.path.join(path, "memory.events")))
                return int(events.get("oom_kill", 0))
    except (OSError, IndexError, ValueError):
        return None

    def peak():
        try:
            return int(open(os.path.join(path, peak_file)).read())
        except OSError:
            return None

    def remove():
        try:
            os.rmdir(path)
        except OSError:
            pass
    return os.path.join(path, tasks), peak, killed, remove


def run(notebook, framework, profile, limit_gb, out_dir, cell_timeout=1800):
    """Execute one notebook in its own process (under the memory limit where possible); returns a dict."""
    path = os.path.join(NOTEBOOKS, notebook if notebook.endswith(".ipynb") else notebook + ".ipynb")
    group = _memory_cgroup(int(limit_gb * 1e9)) if limit_gb else None
    env = {**os.environ, "FTKIT_PROFILE": profile, "FTKIT_FRAMEWORK": framework}
    if group:   # as mybinder.org does: the limit is also in MEM_LIMIT, so the notebook sees a small machine
        env["MEM_LIMIT"] = str(int(limit_gb * 1e9))
    out = os.path.join(out_dir, f"{os.path.basename(path)[:-6]}.{framework}.ipynb")
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--execute", "--to", "notebook",
           f"--ExecutePreprocessor.timeout={cell_timeout}", "--output", out, path]

    def enter():
        if group:
            open(group[0], "w").write(str(os.getpid()))   # the child and all it starts are in the group
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=NOTEBOOKS, env=env, capture_output=True, text=True, preexec_fn=enter)
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = {"notebook": os.path.basename(path), "framework": framework, "profile": profile,
              "wall_s": round(wall, 1), "finished": proc.returncode == 0,
              # the largest process so far (the kernel): exact for the first notebook, a lower bound after
              "peak_rss_gb": round(rss / 1e6, 2) if rss > before else None,
              "limit_gb": limit_gb if group else None}
    if group:
        result["cgroup_peak_gb"] = round(group[1]() / 1e9, 2) if group[1]() else None
        result["killed_at_limit"] = group[2]() > 0
        group[3]()
    if proc.returncode:   # the last line that names an error (nbclient ends its report with a rule of dashes)
        named = [line for line in proc.stderr.splitlines() if "Error" in line or "Exception" in line]
        result["error"] = named[-1].strip()[:300] if named else "failed"
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="names in notebooks/ (with or without .ipynb)")
    parser.add_argument("--all", action="store_true", help="every notebook in notebooks/")
    parser.add_argument("--framework", choices=["torch", "tf"], default="torch")
    parser.add_argument("--profile", choices=["smoke", "cpu", "full"], default="cpu")
    parser.add_argument("--limit-gb", type=float, default=2.0, help="memory limit (GB = 1e9 bytes; 0: none)")
    parser.add_argument("--cell-timeout", type=int, default=1800, help="seconds one cell may run")
    parser.add_argument("--keep", metavar="DIR", help="keep the executed notebooks (their outputs) in DIR")
    args = parser.parse_args(argv)
    names = sorted(f for f in os.listdir(NOTEBOOKS) if f.endswith(".ipynb")) if args.all else args.notebooks
    if not names:
        parser.error("name some notebooks, or --all")
    if args.limit_gb and _memory_cgroup_available() is False:
        print(f"no memory cgroup can be made here (needs root and cgroups): running without the "
              f"{args.limit_gb:g} GB limit; peak_rss_gb is the only figure", file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = os.path.abspath(args.keep) if args.keep else scratch
        os.makedirs(out_dir, exist_ok=True)
        for name in names:
            # one interpreter per notebook, so that RUSAGE_CHILDREN's peak is this notebook's
            code = ("import json, sys; sys.path.insert(0, %r); import notebook_memory as m; "
                    "print(json.dumps(m.run(%r, %r, %r, %r, %r, %r)))"
                    % (os.path.dirname(os.path.abspath(__file__)), name, args.framework, args.profile,
                       args.limit_gb, out_dir, args.cell_timeout))
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else json.dumps(
                {"notebook": name, "error": proc.stderr.strip()[-300:]})
            print(line, flush=True)


def _memory_cgroup_available():
    group = _memory_cgroup(10**9)
    if group is None:
        return False
    group[3]()
    return True


if __name__ == "__main__":
    main()
