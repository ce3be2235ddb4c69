"""PyTorch encoder-decoder: transformers' ``EncoderDecoderModel`` warm-started from one BERT-style checkpoint
(design: ftkit.tasks.seq2seq).

``EncoderDecoderModel.from_encoder_decoder_pretrained(path, path)`` loads the checkpoint twice: as the
encoder, and as a causal decoder (``is_decoder=True``) with a new cross-attention in every layer and a
language-model head whose output weights are the decoder's token embedding (tied). The start, end and
padding tokens go on ``generation_config`` (transformers 5 refuses generation settings on the model's
config). Decoding is transformers' ``generate``: greedy or beam search, with its cache of past keys and
values, so each new token costs one decoder step.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ...tasks import IGNORE


class TextWriter(nn.Module):
    """A network that writes text, called the way ftkit calls a model of a task with a ``"native"`` loss: a
    batch and its targets (N, T) (token ids, IGNORE = -100 after the end) in, ``(loss, generated)`` out.
    ``loss`` is the mean token cross-entropy with teacher forcing (None without targets; NaN in inference
    mode); ``generated`` (inference mode only) is (N, ``max_length``) token ids as float32, the end token
    then padding after each text. ``decoding`` holds ``num_beams`` and ``max_length``. A subclass says how
    it reads its input (``prepare``), scores a shifted target (``logits``) and decodes (``decode``)."""

    def __init__(self, max_length, start, pad):
        super().__init__()
        self.decoding = {"num_beams": 1, "max_length": max_length}
        self.start, self.pad = start, pad

    def prepare(self, x):
        return x

    def forward(self, x, targets=None):
        x = self.prepare(x)
        loss = None
        if targets is not None and bool((targets != IGNORE).any()):
            keep = int((targets != IGNORE).any(0).nonzero().max()) + 1   # no all-padding columns
            loss = self.loss(x, targets[:, :keep].long())
        if self.training:
            return loss, None
        if loss is None:
            loss = torch.full((), float("nan"), device=next(self.parameters()).device)
        return loss, self.generate(x)

    def loss(self, x, targets):
        """Mean token cross-entropy with teacher forcing: the decoder reads the start token and the target
        shifted right by one, and predicts each next token (IGNORE: padding after the end token)."""
        read = torch.cat([torch.full_like(targets[:, :1], self.start), targets[:, :-1]], 1)
        read = read.masked_fill(read == IGNORE, self.pad)
        return F.cross_entropy(self.logits(x, read).float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

    @torch.no_grad()
    def generate(self, x):
        """Token ids (N, max_length) after the start token, padded with the pad id."""
        out = self.decode(x, self.decoding["num_beams"], self.decoding["max_length"])[:, 1:]   # no start token
        full = torch.full((len(out), self.decoding["max_length"]), self.pad, dtype=torch.float32, device=out.device)
        full[:, :out.shape[1]] = out.float()
        return full


class Seq2SeqNet(TextWriter):
    """An ``EncoderDecoderModel`` as a :class:`TextWriter`: a batch ``{"input_ids", "attention_mask"}``."""

    def __init__(self, model, max_length):
        cfg = model.config
        super().__init__(max_length, cfg.decoder_start_token_id, cfg.pad_token_id)
        self.model = model

    def prepare(self, x):
        return trimmed(x)   # a split is padded to its longest text: each batch only to its own

    def logits(self, x, read):
        return self.model(input_ids=x["input_ids"], attention_mask=x["attention_mask"], decoder_input_ids=read,
                          decoder_attention_mask=(read != self.pad).long()).logits

    def decode(self, x, num_beams, max_length):
        return self.model.generate(input_ids=x["input_ids"], attention_mask=x["attention_mask"], num_beams=num_beams,
                                   max_new_tokens=max_length, do_sample=False, early_stopping=num_beams > 1)


def trimmed(x):
    """A batch of padded token rows without the columns that are padding in every row."""
    keep = int(x["attention_mask"].sum(1).max())
    return {k: v[:, :keep] for k, v in x.items()}


def build(path, pretrained, max_length, quiet, special):
    """The warm-started (``pretrained=False``: the same architecture, randomly initialised) encoder-decoder:
    ``(net, groups, new, spec)``.

    Groups, input to output: encoder_embeddings, the encoder's layers in two halves, decoder_embeddings
    (positions, token types and their LayerNorm), decoder_layers (self-attention and feed-forward, copied
    from the checkpoint), cross_attention (new) and output (the language-model head: a new transform, and
    output weights that *are* the decoder's token embedding, tied, with a bias starting at 0). ``new``
    lists the modules that start random (what ``init_head`` initialises); the last two groups hold them,
    so every strategy trains both."""
    from transformers import AutoConfig, BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel
    with quiet():
        if pretrained:
            model = EncoderDecoderModel.from_encoder_decoder_pretrained(path, path)
        else:   # seeded, so the same random network every time; the global random state is left as it was
            enc = AutoConfig.from_pretrained(path)
            dec = BertConfig(**{**enc.to_dict(), "is_decoder": True, "add_cross_attention": True})
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = EncoderDecoderModel(encoder=BertModel(enc), decoder=BertLMHeadModel(dec))
    model.encoder.pooler = None   # its pooled output is never used: no weights that cannot learn
    tok = special   # [CLS] (the decoder's start token), [SEP] (its end token), [PAD]
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id, cfg.pad_token_id = tok["[CLS]"], tok["[PAD]"]
    model.generation_config.eos_token_id, model.generation_config.bos_token_id = tok["[SEP]"], tok["[CLS]"]
    enc = model.encoder
    n = len(enc.encoder.layer)
    decoder, new = decoder_groups(model.decoder, path)
    groups = [("encoder_embeddings", [enc.embeddings]),
              (f"encoder_layers_0_{n // 2 - 1}", list(enc.encoder.layer[:n // 2])),
              (f"encoder_layers_{n // 2}_{n - 1}", list(enc.encoder.layer[n // 2:]))] + decoder
    return Seq2SeqNet(model, max_length), groups, new, {"max_positions": enc.config.max_position_embeddings}


def decoder_groups(dec, path):
    """The groups of a warm-started ``BertLMHeadModel`` decoder, input to output, and its new modules:
    decoder_embeddings (positions, token types and their LayerNorm), decoder_layers (self-attention and
    feed-forward, copied from the checkpoint), cross_attention (new) and output (the language-model head:
    a new transform, and output weights that *are* the token embedding, tied, with a bias starting at 0)."""
    layers = dec.bert.encoder.layer
    cross = [layer.crossattention for layer in layers]
    emb = dec.bert.embeddings
    if dec.cls.predictions.decoder.weight is not emb.word_embeddings.weight:
        raise RuntimeError(f"{path}: the decoder's output weights are not tied to its token embedding")
    groups = [("decoder_embeddings", [emb.position_embeddings, emb.token_type_embeddings, emb.LayerNorm]),
              ("decoder_layers", [m for layer in layers for m in (layer.attention, layer.intermediate, layer.output)]),
              ("cross_attention", cross),
              ("output", [dec.cls.predictions.transform, dec.cls.predictions.decoder])]
    return groups, cross + [dec.cls.predictions.transform]
