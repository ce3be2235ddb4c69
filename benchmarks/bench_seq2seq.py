"""Seq2seq (translation) through ftkit and through transformers' own reference loop, side by side.

The model: ``load_model("minilm", task="seq2seq")``, MiniLM warm-started as encoder and decoder (an
``EncoderDecoderModel``, 49M weights), on ftkit's offline English->French phrases. Each contender runs in
its own fresh process; ``--size`` is the model's max_length (tokens). Two measures, each printed as a ratio:

Training, samples/s (full fine-tuning, AdamW lr 1e-4, one epoch after a warm-up):

* ``train_reference``: the plain loop transformers documents for an ``EncoderDecoderModel``: each batch
  tokenized and padded to its own longest text, ``model(input_ids, attention_mask, labels).loss``, backward,
  step (fused AdamW, and bf16 autocast on a GPU);
* ``train_ftkit_torch``: ``ftkit.finetune`` on the texts (its second epoch's samples/s);
* ``train_ftkit_tf`` (``--only`` it): the same through TensorFlow, for information.

Greedy decoding, generated tokens per second (every text up to its end token, ``--size`` at most):

* ``decode_hf``: transformers' ``generate`` on the same torch model, batches of ``--batch`` sources;
* ``decode_ftkit_torch``: ``ftkit.generate`` (which calls ``generate``, plus ftkit's tokenizing and decoding);
* ``decode_ftkit_tf``: ``ftkit.generate`` in TensorFlow (keras-hub's GreedySampler over a key/value cache).

    python benchmarks/bench_seq2seq.py                          # CPU: 256 phrases, batch 32
    python benchmarks/bench_seq2seq.py --n 4096 --batch 128     # a GPU
"""
import time

import _harness


def phrases(n):
    from ftkit.translation_data import phrase_pairs
    splits, _ = phrase_pairs(max(10, n // 2), seed=0)
    return splits["train"].x[:n], splits["train"].y[:n]


def train_reference(args):
    import torch
    import ftkit
    from ftkit.text import _tokenizer
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, y = phrases(args.n)
    model = ftkit.load_model("minilm", task="seq2seq", max_length=args.size, verbose=False)
    net = model.native.model.to(device)
    tok = _tokenizer(model.input_spec["tokenizer"], None)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01, fused=True)

    def epoch(limit=None):
        net.train()
        order = torch.randperm(len(x)).split(args.batch)
        for i, idx in enumerate(order):
            if limit is not None and i >= limit:
                break
            src = tok.encode_batch([x[j] for j in idx.tolist()])
            tgt = tok.encode_batch([y[j] for j in idx.tolist()])
            ids = torch.tensor([e.ids for e in src], device=device)
            mask = torch.tensor([e.attention_mask for e in src], device=device)
            labels = torch.tensor([e.ids[1:] for e in tgt], device=device)   # without [CLS]: tokens, [SEP]
            labels[torch.tensor([e.attention_mask[1:] for e in tgt], device=device) == 0] = -100
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = net(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    epoch(limit=3)
    t = time.perf_counter()
    epoch()
    return len(x) / (time.perf_counter() - t)


def _data(n):
    import ftkit
    x, y = phrases(n)
    return ftkit.Dataset.from_arrays("phrases", (x, y), (x[:16], y[:16]), task="seq2seq")


def train_ftkit(args, framework):
    import ftkit
    model = ftkit.load_model("minilm", framework=framework, task="seq2seq", max_length=args.size, verbose=False)
    run = ftkit.finetune(model, _data(args.n), epochs=2, lr=1e-4, batch_size=args.batch, progress=False)
    return run.history["epochs"][-1]["samples_per_sec"]


def decode_hf(args):
    import torch
    import ftkit
    from ftkit.text import _tokenizer
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x, _ = phrases(args.n)
    model = ftkit.load_model("minilm", task="seq2seq", max_length=args.size, verbose=False)
    net = model.native.model.to(device).eval()
    tok = _tokenizer(model.input_spec["tokenizer"], None)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")

    def run(texts):
        out = []
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            for i in range(0, len(texts), args.batch):
                enc = tok.encode_batch(texts[i:i + args.batch])
                ids = torch.tensor([e.ids for e in enc], device=device)
                mask = torch.tensor([e.attention_mask for e in enc], device=device)
                gen = net.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.size, do_sample=False)
                out += tok.decode_batch(gen.tolist(), skip_special_tokens=True)
        return out

    run(x[:args.batch])
    t = time.perf_counter()
    texts = run(x)
    return _harness.generated_tokens(texts, model) / (time.perf_counter() - t)


def decode_ftkit(args, framework):
    import ftkit
    x, _ = phrases(args.n)
    model = ftkit.load_model("minilm", framework=framework, task="seq2seq", max_length=args.size, verbose=False)
    return _harness.decode_rate(model, x, args.batch)


def main():
    _harness.generation_main(__file__, __doc__, "phrases", train_reference, train_ftkit, decode_hf, decode_ftkit, n=256,
                             size=32, batch=32)   # notebook 24's max_length; some phrases need more than 24


if __name__ == "__main__":
    main()
