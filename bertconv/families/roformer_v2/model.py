"""bertconv's PyTorch RoFormer-v2 (bert4keras' ``RoFormerV2``, ``model='roformer_v2'``), under the
``RoFormerV2*`` state-dict names of its own modeling code.

This module imports only torch: it is written as it is into the ``modeling_roformer_v2.py`` of
every converted RoFormer-v2 directory (bertconv/families/remote_code.py), so it must stay
self-contained.

RoFormer-v2 is RoFormer with the parameters taken out of everything but the projections: no
biases anywhere, and each norm is ``x / sqrt(mean(x^2) + eps)`` (no mean subtracted, no scale, no
offset; bert4keras' epsilon 1e-7), after the embeddings and after each post-norm block. Queries
and keys are rotated pair by pair, ``(x[2i], x[2i+1])`` by the angle ``pos * 10000^(-2i/d)``, as
RoFormer v1's. The masked-LM head is the hidden states times the transposed token embeddings
(``with_mlm='linear'``: tied, no transform, no bias); the fine-tunes' classifier is a dense on
the first token's hidden state.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

#: the rotary angles' base
ROTARY_BASE = 10000.0
#: what bert4keras adds to the scores of masked keys (its -inf)
MASKED = -1e12

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,  # Hugging Face's "gelu" is the exact erf form, bert4keras' too
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


def activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"hidden_act {name!r} is not supported; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class Embedding(nn.Embedding):
    """``nn.Embedding`` that draws no values on the meta device (the weights are loaded next)."""

    def reset_parameters(self):
        if self.weight.device.type != "meta":
            super().reset_parameters()


def norm(x, eps):
    """bert4keras' LayerNormalization(zero_mean=False, scale=False, offset=False)."""
    compute = torch.promote_types(x.dtype, torch.float32)
    y = x.to(compute)
    return (y / torch.sqrt(y.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rotary(seq_len, head_size, dtype, device=None):
    """(sin, cos), each [T, head_size], every angle repeated for both members of its pair."""
    inv_freq = ROTARY_BASE ** (-torch.arange(0, head_size // 2, dtype=torch.float64, device=device) * 2.0 / head_size)
    angles = torch.arange(seq_len, dtype=torch.float64, device=device)[:, None] * inv_freq[None, :]
    return (torch.repeat_interleave(torch.sin(angles), 2, dim=-1).to(dtype),
            torch.repeat_interleave(torch.cos(angles), 2, dim=-1).to(dtype))


def rotate(x, sin, cos):
    turned = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).reshape_as(x)
    return x * cos + turned * sin


class RoFormerV2Embeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.eps = config.layer_norm_eps
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)

    def forward(self, input_ids, token_type_ids):
        return norm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids), self.eps)


class RoFormerV2SelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, x, mask_adder, sin, cos):
        batch, seq_len, hidden = x.shape

        def heads_first(t):
            return t.view(batch, seq_len, self.num_heads, self.head_size).transpose(1, 2)  # [B, A, T, d]

        query = rotate(heads_first(self.query(x)), sin, cos)
        key = rotate(heads_first(self.key(x)), sin, cos)
        value = heads_first(self.value(x))
        scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_size))
        compute = torch.promote_types(scores.dtype, torch.float32)
        probs = torch.softmax(scores.to(compute) + mask_adder, dim=-1).to(value.dtype)
        return torch.matmul(probs, value).transpose(1, 2).reshape(batch, seq_len, hidden)


class RoFormerV2Dense(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out, bias=False)


class RoFormerV2Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self = RoFormerV2SelfAttention(config)
        self.output = RoFormerV2Dense(config.hidden_size, config.hidden_size)


class RoFormerV2Layer(nn.Module):
    """Attention, add, norm; feed-forward, add, norm."""

    def __init__(self, config):
        super().__init__()
        self.eps = config.layer_norm_eps
        self.act = activation(config.hidden_act)
        self.attention = RoFormerV2Attention(config)
        self.intermediate = RoFormerV2Dense(config.hidden_size, config.intermediate_size)
        self.output = RoFormerV2Dense(config.intermediate_size, config.hidden_size)

    def forward(self, x, mask_adder, sin, cos):
        attended = self.attention.output.dense(self.attention.self(x, mask_adder, sin, cos))
        x = norm(x + attended, self.eps)
        return norm(x + self.output.dense(self.act(self.intermediate.dense(x))), self.eps)


class RoFormerV2Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(RoFormerV2Layer(config) for _ in range(config.num_hidden_layers))


class Encoder(nn.Module):
    """The encoder (``RoFormerV2Model``): a dict of named outputs, ``embeddings``, ``layer_<i>``,
    ``sequence_output``. RoFormer-v2 has no pooler."""

    def __init__(self, config, with_pooler=False, num_labels=2):
        super().__init__()
        self.config = config
        self.embeddings = RoFormerV2Embeddings(config)
        self.encoder = RoFormerV2Encoder(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        results = {"embeddings": x}
        compute = torch.promote_types(x.dtype, torch.float32)
        mask_adder = ((1.0 - attention_mask.to(compute)) * MASKED)[:, None, None, :]
        layers = self.encoder.layer
        head_size = x.shape[-1] // layers[0].attention.self.num_heads if len(layers) else 2
        sin, cos = rotary(input_ids.shape[1], head_size, x.dtype, x.device)
        for i, layer in enumerate(layers):
            x = layer(x, mask_adder, sin, cos)
            results[f"layer_{i}"] = x
        results["sequence_output"] = x
        return results


class MaskedLM(nn.Module):
    """The encoder, then its hidden states times the token embeddings (no weights of its own)."""

    def __init__(self, config, with_pooler=False, num_labels=2):
        super().__init__()
        self.roformer_v2 = Encoder(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.roformer_v2(input_ids, token_type_ids, attention_mask)
        table = self.roformer_v2.embeddings.word_embeddings.weight
        results["mlm_logits"] = torch.matmul(results["sequence_output"], table.t())
        return results


class SequenceClassification(nn.Module):
    """The fine-tunes' head: a dense (with a bias) on the first token's hidden state."""

    def __init__(self, config, with_pooler=False, num_labels=2):
        super().__init__()
        self.roformer_v2 = Encoder(config)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.roformer_v2(input_ids, token_type_ids, attention_mask)
        results["classifier_logits"] = self.classifier(results["sequence_output"][:, 0])
        return results


#: Hugging Face architecture -> the class above that computes it
ARCHITECTURES = {"RoFormerV2Model": Encoder, "RoFormerV2ForMaskedLM": MaskedLM,
                 "RoFormerV2ForSequenceClassification": SequenceClassification}
