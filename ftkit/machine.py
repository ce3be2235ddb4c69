"""What this machine allows: the memory this process may use, how much it uses, and where it runs.

* :func:`memory_limit`: the limit a hosted notebook runs under, in bytes. mybinder.org (like any JupyterHub on
  Kubernetes) sets ``MEM_LIMIT`` for the user's server, and a container's cgroup holds the same figure; a laptop
  has neither, and then there is no limit to watch (``None``).
* :func:`memory_used`: this process's anonymous resident memory (what a limit kills for), in bytes.
* :class:`MemoryWatch`: used by the training loop; past ``share`` of the limit the run stops (status ``stopped``)
  with a message that says what to do, before the kernel is killed without one.
* :func:`save_memory`: on a small machine, the allocators give freed memory back at once and the training loop's
  weight snapshots live in a file (some speed for memory); :func:`release_memory`: hand back what is free now (the
  training loop calls it after each epoch); :func:`in_a_file`: arrays in a temporary file's pages.
"""
import ctypes
import functools
import os
import sys
import tempfile

import numpy as np

# A machine with less memory than this is "small": a notebook's cpu profile uses its smaller sizes there.
SMALL_MACHINE_BYTES = 3 * 2**30
CGROUP_FILES = ("/sys/fs/cgroup/memory.max",                      # cgroup v2
                 "/sys/fs/cgroup/memory/memory.limit_in_bytes")   # cgroup v1
_NO_LIMIT = 2**60   # cgroup v1 writes a huge number for "no limit"
# Set by save_memory: the training loop keeps its best-epoch weights in a file (in_a_file), not in memory.
SNAPSHOTS_IN_A_FILE = False


def memory_limit(environ=None, cgroup_files=None):
    """The memory limit in bytes (the smallest of ``MEM_LIMIT`` and the cgroup's), or None when there is none."""
    environ = os.environ if environ is None else environ
    cgroup_files = CGROUP_FILES if cgroup_files is None else cgroup_files
    found = []
    if str(environ.get("MEM_LIMIT", "")).strip().isdigit() and int(environ["MEM_LIMIT"]) > 0:
        found.append(int(environ["MEM_LIMIT"]))
    for path in cgroup_files:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < _NO_LIMIT:
            found.append(int(text))
    return min(found) if found else None


def small_machine(limit):
    """True when ``limit`` (a :func:`memory_limit`, None for none) is under :data:`SMALL_MACHINE_BYTES`."""
    return limit is not None and limit < SMALL_MACHINE_BYTES


def memory_used():
    """This process's anonymous resident memory in bytes: its arrays, weights and buffers, which only a kill can
    free, without the libraries' code, which the kernel drops and reads again near a limit (on Linux: resident
    minus shared pages; elsewhere the peak resident size; 0 where the platform does not say)."""
    try:
        with open("/proc/self/statm") as f:
            fields = f.read().split()
        return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource   # not on Windows
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    except (ImportError, OSError):
        return 0


# glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8


@functools.lru_cache(maxsize=None)
def _glibc():
    """The C library when it is glibc (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def save_memory():
    """Trade some CPU speed (about 10% in PyTorch, 20% in TensorFlow) for memory, for a small machine; returns
    what it changed, in words.

    * glibc's malloc: an array of 128 KB or more gets its own pages, handed back when it is freed (by default
      the threshold grows with the arrays freed, and large freed arrays then stay in the heap), and one pool
      instead of eight per core. PyTorch's CPU tensors and TensorFlow's buffers come from malloc; this lowered
      a 49-million-weight seq2seq run's peak by 0.16 GB and the memory left after it by 0.55 GB.
    * TensorFlow, when it is not imported yet: its oneDNN kernels allocate with malloc too, not from oneDNN's
      own pool, which never gives memory back (about 0.5 GB after a captioning model's first step).
    * The training loop's snapshot of the best epoch's weights (a copy of every weight a run changes) is kept
      in a temporary file (:func:`in_a_file`), not in memory.
    """
    done = []
    libc = _glibc()
    if libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024) and libc.mallopt(_M_ARENA_MAX, 1):
        done.append("malloc returns freed arrays at once")
    if "tensorflow" not in sys.modules:
        os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] = "1"
        done.append("TensorFlow allocates with malloc")
    global SNAPSHOTS_IN_A_FILE
    SNAPSHOTS_IN_A_FILE = True
    done.append("weight snapshots in a temporary file")
    return done


def in_a_file(arrays):
    """Copies of ``arrays`` (a dict of NumPy arrays) in the pages of one temporary file, deleted when the last
    copy is. Those pages are the file's, not the process's: near a memory limit the system writes them out and
    drops them, then reads them again when they are used (a snapshot of the weights is read only to restore it).
    The file goes where :mod:`tempfile` puts files (``TMPDIR``), which must be a disk, not memory (tmpfs)."""
    offsets, end = {}, 0
    for k, a in arrays.items():
        offsets[k] = end
        end += -(-a.nbytes // 64) * 64   # each array 64-byte aligned
    size = max(end, 1)   # a mapping cannot be empty
    with tempfile.TemporaryFile(prefix="ftkit-snapshot-") as f:   # unlinked at once; the mapping keeps it
        f.truncate(size)
        pages = np.memmap(f, dtype=np.uint8, mode="r+", shape=(size,))
    out = {}
    for k, a in arrays.items():
        view = pages[offsets[k]:offsets[k] + a.nbytes].view(a.dtype).reshape(a.shape)
        view[...] = a
        out[k] = view
    return out


def release_memory():
    """Hand the memory malloc holds free back to the system (glibc's malloc_trim; nothing elsewhere)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def gb(n):
    return f"{n / 2**30:.1f} GB"


def on_colab():
    return "google.colab" in sys.modules


class MemoryWatch:
    """Says when this process nears the memory limit: ``watch.full()`` is a message past ``share`` of it, else
    None. Reading the resident size costs microseconds, so the training loop asks every ``every`` steps."""

    def __init__(self, limit=None, share=0.9, every=5):
        self.limit = memory_limit() if limit is None else limit
        self.share, self.every, self.calls = share, every, 0
        self.message = None   # set once the limit is near

    def full(self):
        """The message (also kept in ``self.message``) once this process passes ``share`` of the limit, else None."""
        if self.limit is None or self.message:
            return self.message
        self.calls += 1
        if self.calls % self.every:
            return None
        used = memory_used()
        if used < self.share * self.limit:
            return None
        print(f"ftkit: stopping: this process uses {gb(used)} of the {gb(self.limit)} this machine allows")
        self.message = (f"out of memory soon: this process uses {gb(used)} of the {gb(self.limit)} this machine allows "
                f"(MEM_LIMIT or the container's limit), so the run stopped before the kernel is killed. To go on: "
                f"restart the kernel (Kernel > Restart), then train on fewer or smaller examples or a smaller "
                f"batch_size, or run the notebook's smoke profile (FTKIT_PROFILE=smoke), or use a machine with more "
                f"memory (a laptop, or Colab)")
        return self.message
