"""ftkit_widgets: Jupyter controls for fine-tuning with ftkit (ipywidgets 8 + anywidget).

    from ftkit_widgets import FineTunePanel
    panel = FineTunePanel(model="mobilenet_v2", dataset="fashion_mnist", subset=50)
    panel

* :class:`FineTunePanel` - every setting of a run as a control, Train / Stop,
  and the three pieces below in one widget; ``panel.code()`` gives the plain
  ftkit calls for the same run, ``FineTunePanel.from_config(config)`` the reverse.
* :class:`LiveView` - loss per step, validation metrics per epoch, LR of each
  group, samples/s and time left, drawn while a run trains (an ``ftkit.Callback``).
* :class:`LayerMap` - the layer groups as blocks, frozen or trainable, with their
  LR multipliers; click a block to freeze or unfreeze it (an anywidget).
* :class:`RunBoard` - every run of this kernel in one table and one plot; CSV export.

Works in JupyterLab 4 and Notebook 7 as installed (ipywidgets and anywidget ship
their front-end extensions). **Colab** needs its custom widget manager turned
on once per notebook, before the first widget is shown::

    from google.colab import output
    output.enable_custom_widget_manager()

This package uses only ftkit's public API; ftkit itself never imports it.
"""
import ipywidgets

from ftkit import __version__  # one version for both packages of the ftkit distribution

# Colab ships ipywidgets 7; installing ftkit upgrades it to 8, but a kernel that imported 7 before the install keeps
# it until restarted (ipywidgets 7 silently drops most tooltips and tab titles, and the panel fails).
if int(ipywidgets.__version__.split(".")[0]) < 8:
    raise ImportError(f"ftkit_widgets needs ipywidgets 8 or newer, and this kernel has ipywidgets "
                      f"{ipywidgets.__version__}: if you just installed ftkit, restart the kernel (on Colab: "
                      f"Runtime > Restart session) and run the notebook again; otherwise pip install 'ipywidgets>=8'")

from .layermap import LayerMap  # noqa: E402
from .live import LiveView  # noqa: E402
from .panel import FineTunePanel  # noqa: E402
from .runboard import RunBoard  # noqa: E402

__all__ = ["__version__", "FineTunePanel", "LiveView", "LayerMap", "RunBoard"]
