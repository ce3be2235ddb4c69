"""The two backends, mirrored module for module (as Keras 3 mirrors its own).

``ftkit/backends/torch/`` and ``ftkit/backends/tf/`` each have the same modules
with the same function names; everything framework-neutral (strategies,
schedules, the training loop, configs, metrics, tasks) lives above them in ``ftkit/``.

The task seam (ftkit.tasks). A task (classification, regression, qa, ...) is framework-neutral: it
encodes a split into NumPy rows (``Encoded``: inputs, targets, meta), names its per-row loss
(``"cross_entropy"`` over the last axis, or ``"mse"``), turns logits into predictions and computes
its metrics. A backend supplies the model side only: ``models.build(..., task=...)`` makes a network
whose logits fit the task's loss, ``data.from_encoded`` makes tensors of the rows, ``train.per_row_loss``
computes the named losses and ``Trainer.predict`` returns plain logits. A task whose loss is
``"native"`` (detection) gets a model that computes its own loss: the Trainer calls it with a prepared
batch and its targets (torch: ``net(x, targets)``; TensorFlow: ``net.loss_and_outputs(x, targets,
training)``) and gets ``(loss, outputs)``. A new task therefore needs a Task subclass and a builder per
backend; the training loop (ftkit.training) and these Trainers do not change.

``models.py``
    ``build(name, num_classes, *, task, dropout, pretrained, image_size, max_length, stride) -> dict`` (the
    detector's parts come from ``detection.build``) with keys
    ``native`` (nn.Module / keras.Model mapping a prepared batch to logits),
    ``body`` and ``head`` (the parts that ``feature_extraction`` splits at),
    ``groups`` (list of ``(name, [modules or layers])``, input to output, the head last),
    ``input_spec`` (dict: ``modality`` and its preprocessing) and ``source`` (where the weights came from).
    ``count_params(members)``, ``group_trainable(members)``, ``set_group_trainable(members, flag)``,
    ``dropout_layers(members)``, ``dropout_rate(members)``, ``set_dropout_rate(members, rate)``,
    ``init_layers(members, seed)`` (re-initialise from a seed, leaving the global random state alone),
    ``modes(native)`` / ``set_modes(native, state)`` (torch's train/eval flags; nothing in Keras),
    ``wrap(native, groups, body=None, head=None)`` checks a user's own model (see ftkit.wrap_model).
    PEFT (ftkit.peft): ``PATH_SEP``, ``body_layers(model)`` -> ``[(group index, path, layer)]``,
    ``cannot_adapt(layer)`` (None, or what LoRA cannot adapt), ``is_pointwise(layer)``,
    ``lora_size(layer, rank)``, ``add_lora(model, layers, rank, alpha, seed)`` (peft's
    ``inject_adapter_in_model`` / Keras' ``enable_lora``), ``train_only(members, peft)`` and
    ``count_params(members, only=peft)``.
``data.py``
    ``prepare(model, x, *, train, augment)`` turns a device batch into what the model takes
    (resize, channels, normalisation, augmentation; channels_last in torch);
    ``augment_images(x, augment[, seed])`` applies an ftkit.augment policy with torchvision v2 / Keras
    layers, and ``augment_examples(x, augment, n, seed, image_size)`` shows it (ftkit.augment_examples);
    ``raw_loader(split, batch_size, shuffle)`` gives a native DataLoader / tf.data.Dataset;
    ``from_encoded(model, encoded[, device])`` makes tensors of a task's rows (``to_tensors(model, split)``
    encodes the split with the model's task first); token arrays keep transformers' names in torch and
    take keras-hub's in TensorFlow.
``train.py``
    ``describe(config)`` -> ``{"device", "name", "precision"}`` (what ``ftkit.device_info`` reports);
    ``Trainer(model, config, class_weights)`` with ``device``, ``precision``, ``notes`` (messages for the
    run), ``seeded()`` (a context in which every random draw comes from ``config.seed`` and after which
    the global random state is as before), ``set_trainable(mask)``,
    ``set_lrs(lrs)``, ``encoded(split)`` (the task's rows of a split, made once) and ``rows(split)``,
    ``batches(split, shuffle, seed, order)`` (``order``: the row indices to read, from
    ftkit.sampling; None keeps the seeded shuffle), ``train_step(batch, update) -> loss``,
    ``train_metrics()`` (training accuracy since the last call, for tasks that count it),
    ``discard_grads()``, ``predict(split) -> (loss, logits)`` (the task makes predictions of the
    logits), ``get_weights(previous, reuse)`` (a snapshot; ``reuse`` overwrites ``previous`` in place),
    ``set_weights(snapshot)``, ``weights_finite()``,
    ``cache_features(splits)``, ``body_features(split)`` (the body's features as a NumPy array) and
    ``trainable_params()``; ``per_row_loss(kind, logits, y, label_smoothing)`` (a task's loss, per row).
``detection.py``
    ``build(...)``: the RetinaNet detector on the pre-trained MobileNetV2 (torchvision's RetinaNet; the same
    design from keras-hub's parts), its groups (stem, three block groups, ``neck``, ``head``) and ``new``
    (the neck and heads, which ``FTModel.init_head`` initialises); see ftkit.tasks.detection.
``io.py``
    ``save_weights(model, path, parts=None)`` and ``load_weights(model, path, parts=None)`` with
    safetensors (never pickle); ``parts`` (ftkit.peft.saved_parts) keeps only what a peft run changed.
"""
