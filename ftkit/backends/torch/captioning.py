"""PyTorch image captioning: the pre-trained MobileNetV2 as the encoder and a text decoder warm-started from
one BERT-style checkpoint (design: ftkit.tasks.captioning). The mirror of ``ftkit/backends/tf/captioning.py``.

The encoder is torchvision's MobileNetV2 ``features``: its last map, (N, 1280, h, w) with h = w = image
size / 32, read as h*w image tokens, each projected to the decoder's width with a learned position added and
a LayerNorm (:class:`ImageTokens`, new). The decoder is transformers' ``BertLMHeadModel`` loaded from the
checkpoint with ``is_decoder=True, add_cross_attention=True``, as ``EncoderDecoderModel`` builds its decoder
(ftkit/backends/torch/seq2seq.py): causal self-attention and feed-forward copied, cross-attention new, output
weights tied to the token embedding. Decoding is its ``generate`` with ``encoder_hidden_states`` and a cache
of self- and cross-attention keys and values (``EncoderDecoderCache``: the decoder alone would start a
self-attention-only cache).
"""
import torch
from torch import nn

from .seq2seq import TextWriter, decoder_groups


class ImageTokens(nn.Module):
    """A feature map (N, C, h, w) as h*w tokens of width ``hidden``: projected, plus a learned position per
    cell (BERT's initialisation, std 0.02), then LayerNorm."""

    def __init__(self, channels, hidden, cells):
        super().__init__()
        self.project = nn.Linear(channels, hidden)
        self.positions = nn.Parameter(torch.empty(1, cells, hidden))
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.trunc_normal_(self.positions, std=0.02)
        self.project.reset_parameters()
        self.norm.reset_parameters()

    def forward(self, features):
        return self.norm(self.project(features.flatten(2).transpose(1, 2)) + self.positions)


class CaptionNet(TextWriter):
    """MobileNetV2 features, image tokens and a warm-started text decoder, as a
    :class:`~ftkit.backends.torch.seq2seq.TextWriter`: a batch of prepared images (N, 3, H, W) in."""

    def __init__(self, features, tokens, decoder, max_length, special):
        super().__init__(max_length, special["[CLS]"], special["[PAD]"])
        self.features, self.tokens, self.decoder = features, tokens, decoder

    def memory(self, images):
        """The image tokens (N, h*w, hidden) the decoder's cross-attention reads."""
        return self.tokens(self.features(images))

    def logits(self, images, read):
        return self.decoder(input_ids=read, attention_mask=(read != self.pad).long(),
                            encoder_hidden_states=self.memory(images)).logits

    def decode(self, images, num_beams, max_length):
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache
        memory = self.memory(images)
        cfg = self.decoder.config
        return self.decoder.generate(input_ids=torch.full((len(memory), 1), self.start, device=memory.device),
                                     encoder_hidden_states=memory, num_beams=num_beams, max_new_tokens=max_length,
                                     do_sample=False, early_stopping=num_beams > 1,
                                     cache=EncoderDecoderCache(DynamicCache(config=cfg), DynamicCache(config=cfg)))


def build(path, pretrained, max_length, image_size, quiet, special, mobilenet):
    """The captioning network (``pretrained=False``: the same architecture, randomly initialised, seeded):
    ``(net, groups, new, spec)``. ``mobilenet(pretrained)`` -> (torchvision MobileNetV2, source).

    Groups, input to output: the MobileNetV2's (stem, blocks_2_6, blocks_7_13, blocks_14_18), then the
    decoder's (decoder_embeddings, decoder_layers, cross_attention, output; seq2seq's). The image tokens
    join cross_attention: they exist only to be read by it, and start random with it, so the new weights
    sit in the last two groups and every strategy trains them."""
    from transformers import AutoConfig, BertLMHeadModel
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)   # pretrained=False: the same random network every time
        with quiet():
            cfg = AutoConfig.from_pretrained(path, is_decoder=True, add_cross_attention=True)
            decoder = BertLMHeadModel.from_pretrained(path, config=cfg) if pretrained else BertLMHeadModel(cfg)
        net, source = mobilenet(pretrained)
        f = net.features
        with torch.no_grad():   # in eval mode: a probe must not move BatchNorm's statistics
            cells = f.eval()(torch.zeros(1, 3, image_size, image_size)).shape[-2:].numel()
        f.train()
        tokens = ImageTokens(f[-1].out_channels, cfg.hidden_size, cells)
    gen = decoder.generation_config
    gen.bos_token_id = gen.decoder_start_token_id = special["[CLS]"]
    gen.eos_token_id, gen.pad_token_id = special["[SEP]"], special["[PAD]"]
    dec_groups, new = decoder_groups(decoder, path)
    groups = [("stem", [f[0], f[1]]), ("blocks_2_6", list(f[2:7])), ("blocks_7_13", list(f[7:14])),
              ("blocks_14_18", list(f[14:19]))] + dec_groups
    groups[-2] = ("cross_attention", [tokens] + groups[-2][1])
    native = CaptionNet(f, tokens, decoder, max_length, special)
    return native, groups, [tokens] + new, {"max_positions": cfg.max_position_embeddings, "source": source}
