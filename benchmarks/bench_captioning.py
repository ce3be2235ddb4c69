"""Captioning through ftkit and through a plain transformers loop, side by side.

The model: ``load_model("mobilenet_v2", task="captioning")``, the pre-trained MobileNetV2 (image tokens) and a
MiniLM decoder (29M weights), on ftkit's offline captioned Fashion-MNIST scenes at 128 px. Each contender runs in
its own fresh process; ``--size`` is the model's max_length (tokens). Two measures, each printed as a ratio:

Training, samples/s (full fine-tuning, AdamW lr 1e-4, one epoch after a warm-up):

* ``train_reference``: the plain loop a practitioner writes for a vision encoder and a transformers decoder:
  the uint8 images sliced from one tensor, scaled and normalised (fused AdamW; channels_last on a CPU, bf16
  autocast on a GPU), each batch's captions tokenized and padded to its own longest, and the decoder's own loss,
  ``decoder(input_ids, attention_mask, encoder_hidden_states=image tokens, labels=...)``; backward, step;
* ``train_ftkit_torch``: ``ftkit.finetune`` on the scenes (its second epoch's samples/s);
* ``train_ftkit_tf`` (``--only`` it): the same through TensorFlow, for information.

Greedy decoding, generated tokens per second (every caption up to its end token, ``--size`` at most):

* ``decode_hf``: transformers' ``generate`` of the same decoder with ``encoder_hidden_states`` and a key/value
  cache, batches of ``--batch`` images;
* ``decode_ftkit_torch``: ``ftkit.generate`` (which calls ``generate``, plus ftkit's batching and decoding);
* ``decode_ftkit_tf``: ``ftkit.generate`` in TensorFlow (keras-hub's GreedySampler over a key/value cache).

The decoders are the untrained warm start (a fine-tuned one writes shorter captions, so fewer tokens per image,
the same for every contender).

    python benchmarks/bench_captioning.py                          # CPU: 256 scenes, batch 32
    python benchmarks/bench_captioning.py --n 4096 --batch 128     # a GPU
"""
import time

import _harness

IMAGE_SIZE = 128


def scenes(n):
    from ftkit.scenes import fashion_captions
    x, y = fashion_captions(sizes={"train": n, "val": 16, "test": 16})["train"]
    return x, y


def _model(args, framework="torch"):
    import ftkit
    return ftkit.load_model("mobilenet_v2", framework=framework, task="captioning", image_size=IMAGE_SIZE,
                            max_length=args.size, verbose=False)


def _images(x, device):
    """The scenes as one uint8 tensor (N, 1, H, W), and a function making a normalised float batch of rows."""
    import torch
    import torch.nn.functional as F
    from ftkit.backends.torch.models import IMAGENET_MEAN, IMAGENET_STD
    pixels = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def batch(idx):
        b = pixels[idx].float().div_(255.0)
        if b.shape[-1] != IMAGE_SIZE:
            b = F.interpolate(b, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
        return ((b.expand(-1, 3, -1, -1) - mean) / std).contiguous(memory_format=torch.channels_last)
    return batch


def train_reference(args):
    import torch
    from ftkit.text import _tokenizer
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, y = scenes(args.n)
    model = _model(args)
    net = model.native.to(device, memory_format=torch.channels_last)
    tok = _tokenizer(model.input_spec["tokenizer"], None)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    batch = _images(x, device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01, fused=True)

    def epoch(limit=None):
        net.train()
        for i, idx in enumerate(torch.randperm(len(x)).split(args.batch)):
            if limit is not None and i >= limit:
                break
            enc = tok.encode_batch([y[j] for j in idx.tolist()])
            ids = torch.tensor([e.ids for e in enc], device=device)          # [CLS] caption [SEP] [PAD]...
            mask = torch.tensor([e.attention_mask for e in enc], device=device)
            labels = ids.masked_fill(mask == 0, -100)                        # the decoder shifts them itself
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = net.decoder(input_ids=ids, attention_mask=mask, labels=labels,
                                   encoder_hidden_states=net.memory(batch(idx.to(device)))).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    epoch(limit=3)
    t = time.perf_counter()
    epoch()
    return len(x) / (time.perf_counter() - t)


def train_ftkit(args, framework):
    import ftkit
    x, y = scenes(args.n)
    data = ftkit.Dataset.from_arrays("scenes", (x, y), (x[:16], y[:16]), task="captioning")
    run = ftkit.finetune(_model(args, framework), data, epochs=2, lr=1e-4, batch_size=args.batch, progress=False)
    return run.history["epochs"][-1]["samples_per_sec"]


def decode_hf(args):
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache
    from ftkit.tasks.seq2seq import tokenizer
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, _ = scenes(args.n)
    model = _model(args)
    net = model.native.to(device, memory_format=torch.channels_last).eval()
    tok = tokenizer(model)
    batch = _images(x, device)
    cfg = net.decoder.config

    def run(n):
        out = []
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            for idx in torch.arange(n).split(args.batch):
                memory = net.memory(batch(idx.to(device)))
                start = torch.full((len(idx), 1), net.start, device=device)
                gen = net.decoder.generate(input_ids=start, encoder_hidden_states=memory, max_new_tokens=args.size,
                                           do_sample=False, cache=EncoderDecoderCache(DynamicCache(config=cfg),
                                                                                      DynamicCache(config=cfg)))
                out += tok.decode_batch(gen.tolist(), skip_special_tokens=True)
        return out

    run(args.batch)
    t = time.perf_counter()
    texts = run(len(x))
    return _harness.generated_tokens(texts, model) / (time.perf_counter() - t)


def decode_ftkit(args, framework):
    x, _ = scenes(args.n)
    return _harness.decode_rate(_model(args, framework), x, args.batch)


def main():
    _harness.generation_main(__file__, __doc__, "scenes", train_reference, train_ftkit, decode_hf, decode_ftkit, n=256,
                             size=24, batch=32)


if __name__ == "__main__":
    main()
