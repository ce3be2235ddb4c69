"""Image captioning on the task seam: an image in, a sentence out.

The model is the seq2seq design (ftkit.tasks.seq2seq) with an image encoder in place of the text
encoder: the pre-trained MobileNetV2's last feature map (one 1280-number vector per 32x32-pixel cell)
becomes a short sequence of "image tokens", each projected to the decoder's width with a learned position
added (new weights); the text decoder is the same warm-started MiniLM decoder, whose new cross-attention
reads those image tokens. Everything after that is seq2seq's: targets as token rows with teacher forcing,
greedy or beam decoding with the model's ``decoding`` settings, sacrebleu BLEU and chrF and the
exact-match rate on the captions in the tokenizer's round-trip form.

A split's ``x`` is images (N, H, W[, C]) checked as every image dataset is (shape, numbers, 0..255), so
an image of the wrong shape is refused before training; ``y`` is one caption (a non-empty string) per
image, refused when empty, longer than the model writes or holding characters its vocabulary lacks.
"""
import numpy as np

from . import Encoded
from .seq2seq import SequenceToSequence, has_targets, strings, target_rows, tokenizer


class Captioning(SequenceToSequence):
    """Image in, text out: an image encoder and a warm-started text decoder (see the module docstring)."""
    name = "captioning"
    checks_examples = False    # the images are checked as any image dataset's; check_split checks the captions

    def check_split(self, dataset, which, split, num_classes):
        if has_targets(split.y):
            strings(list(split.y), "caption", f"dataset {dataset!r}: {which}")

    def check_inputs(self, model, x, where):
        """Images are checked by the dataset (shape, values); the model resizes them to its size."""

    def check_config(self, config):
        self.refuse(config, {"augment": "moves the pixels but not the words: a flip makes 'left of' wrong (no "
                                        "caption-aware policy yet)",
                             "label_smoothing": "computes its own loss (plain token cross-entropy)",
                             "grad_checkpointing": "is not built for captioning models yet",
                             "peft": "is not built for captioning models yet (its new cross-attention and image "
                                     "projection must train in full)"})

    def encode(self, model, split):
        tok = tokenizer(model)
        return Encoded(np.asarray(split.x), target_rows(model, tok, split.y), tok)
