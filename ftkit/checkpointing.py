"""Gradient checkpointing: ``FineTuneConfig(grad_checkpointing=True)``.

A training step normally keeps every activation of the forward pass until the backward pass
needs it. With checkpointing, each body group that trains keeps only its *input*; the backward
pass runs that group's forward again to get the rest (Chen et al. 2016). The gradients are the
same; the memory held between the two passes shrinks, and a step costs about one more forward
pass of the trained groups.

* PyTorch: ftkit runs the body's ``nn.Sequential`` containers itself and calls each member of a
  trained body group through ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``
  (torchvision's convnets and wrapped ``nn.Sequential`` bodies); the transformers text models use
  transformers' own switch, which checkpoints each encoder layer of the trained groups.
* TensorFlow: the body's functional graph is cut after each body group, and the piece of each
  trained group runs under ``keras.remat`` (``tf.recompute_grad``). This works for the image
  models and wrapped functional bodies; the keras-hub text models keep their layers in nested
  models and are refused (use PyTorch for MiniLM).
* Only the groups that train are checkpointed: a frozen group keeps no activations for its own
  weights anyway. The head is never checkpointed. A run in which no body group trains in any epoch
  (``head_only``, ``feature_extraction``) is refused: checkpointing would change nothing.
* BatchNorm updates its running statistics once per step, as without checkpointing (the
  recomputation puts them back), and dropout draws the same masks (PyTorch replays the random
  state; TensorFlow refuses a trained group with dropout).
"""
from .errors import ConfigError
from .strategies import plan


def check(model, config):
    """Refuse ``grad_checkpointing=True`` where it cannot work or would change nothing (before training)."""
    if not config.grad_checkpointing:
        return
    masks = plan(config, len(model.groups), model.new_groups)
    if not any(any(mask[:-1]) for mask in masks):
        raise ConfigError(
            f"grad_checkpointing=True recomputes the body groups that train, but strategy={config.strategy!r} "
            "trains no body group in any epoch (only the head), so it would change nothing; use strategy='full', "
            "'partial', 'progressive' or 'lp_ft', or leave grad_checkpointing=False")
    model.backend.models.check_checkpointing(model)
