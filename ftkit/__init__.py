"""ftkit: one fine-tuning API over PyTorch and TensorFlow (Keras 3).

    import ftkit
    data = ftkit.load_dataset("fashion_mnist").subset(50)
    model = ftkit.load_model("mobilenet_v2", framework="torch", num_classes=10)
    run = ftkit.finetune(model, data, ftkit.FineTuneConfig(strategy="partial", epochs=2))
    ftkit.evaluate(model, data)

torch and TensorFlow are imported only when a model of that framework is used.
"""
from . import _frameworks

_frameworks.guard()  # must run before anything imports TensorFlow (see _frameworks)

from .config import FineTuneConfig  # noqa: E402
from .data import DATASETS, Dataset, Split, load_dataset  # noqa: E402
from .errors import ConfigError, DataError, FtkitError, OfflineError, RunFolderError  # noqa: E402
from .lr_finder import LRFinderResult, lr_find  # noqa: E402
from .models import MODELS, OFFLINE_MODELS, FTModel, LayerGroup, load_model, wrap_model  # noqa: E402
from .runs import load_run  # noqa: E402
from .schedules import SCHEDULES, group_lrs, lr_curve  # noqa: E402
from .strategies import STRATEGIES, suggest_strategy  # noqa: E402
from .training import Callback, Run, device_info, evaluate, finetune, generate, predict, session_runs  # noqa: E402
from . import notebook  # noqa: E402
from . import analysis  # noqa: E402
from . import augment  # noqa: E402
from .augment import augment_examples  # noqa: E402
from . import peft  # noqa: E402
from . import sampling  # noqa: E402
from .sampling import difficulty  # noqa: E402
from .active import ActiveLearningResult, active_learning  # noqa: E402
from . import metrics  # noqa: E402
from . import efficiency  # noqa: E402
from .text import show_tokens  # noqa: E402
from .boxes import show_anchors, show_detections  # noqa: E402
from . import tasks  # noqa: E402
from .tasks import qa, seq2seq  # noqa: E402
from . import translation_data  # noqa: E402

__version__ = "0.1.0"


def profile(framework="torch"):
    """The notebook profile: ``FTKIT_PROFILE`` when set (smoke, cpu or full), else ``full`` on a GPU
    and ``cpu`` without one (see :mod:`ftkit.notebook`)."""
    return notebook.profile(framework)

__all__ = ["FineTuneConfig", "DATASETS", "Dataset", "Split", "load_dataset", "ConfigError", "DataError",
           "FtkitError", "OfflineError", "RunFolderError", "LRFinderResult", "lr_find", "MODELS", "OFFLINE_MODELS", "FTModel",
           "LayerGroup", "load_model", "wrap_model", "load_run", "SCHEDULES", "group_lrs", "lr_curve",
           "STRATEGIES", "suggest_strategy", "Callback", "Run", "device_info", "evaluate", "finetune", "generate",
           "predict", "session_runs", "profile", "notebook", "analysis", "sampling", "difficulty", "ActiveLearningResult",
           "active_learning", "peft", "augment", "augment_examples", "metrics",
           "efficiency", "show_tokens", "show_anchors", "show_detections"]
