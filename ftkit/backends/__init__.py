"""The two backends, mirrored module for module (as Keras 3 mirrors its own).

``ftkit/backends/torch/`` and ``ftkit/backends/tf/`` each have the same modules
with the same function names; everything framework-neutral (strategies,
schedules, the training loop, configs, metrics) lives above them in ``ftkit/``.

``models.py``
    ``build(name, num_classes, *, dropout, pretrained, image_size, max_length) -> dict`` with keys
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
    ``raw_loader(split, batch_size, shuffle)`` gives a native DataLoader / tf.data.Dataset.
``train.py``
    ``describe(config)`` -> ``{"device", "name", "precision"}`` (what ``ftkit.device_info`` reports);
    ``Trainer(model, config, class_weights)`` with ``device``, ``precision``, ``notes`` (messages for the
    run), ``seeded()`` (a context in which every random draw comes from ``config.seed`` and after which
    the global random state is as before), ``set_trainable(mask)``,
    ``set_lrs(lrs)``, ``batches(split, shuffle, seed, order)`` (``order``: the indices to read, from
    ftkit.sampling; None keeps the seeded shuffle), ``train_step(batch, update) -> loss``,
    ``train_metrics()`` (training accuracy since the last call), ``discard_grads()``,
    ``predict(split) -> (loss, scores)``, ``get_weights()``, ``set_weights(snapshot)``,
    ``cache_features(splits)``, ``body_features(split)`` (the body's features as a NumPy array) and
    ``trainable_params()``.
``io.py``
    ``save_weights(model, path, parts=None)`` and ``load_weights(model, path, parts=None)`` with
    safetensors (never pickle); ``parts`` (ftkit.peft.saved_parts) keeps only what a peft run changed.
"""
