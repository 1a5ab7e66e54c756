"""bertconv's own PyTorch ConvBERT (either tower): the module tree is Hugging Face's ``ConvBert*``
state-dict naming, so a converted file loads here and in ``transformers`` alike. Inference only.

Numerics follow yitu-opensource/ConvBert (see ``reference.py``): ELECTRA's embeddings and
projection; in each layer ``heads // head_ratio`` attention heads of width ``hidden // heads``
and as many span-based dynamic convolution heads, concatenated; a grouped feed-forward when
``num_groups`` > 1; ELECTRA's heads.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ... import outputs as out
from ...config import BertConfig
from ...errors import ConfigError
from ..bert.model import BertEmbeddings, activation, encode
from ..electra.model import ElectraGeneratorPredictions, GeneratorLMHead

#: the ConvBERT fields of a config (Hugging Face's names), none of which has a safe default
CONVBERT_FIELDS = ("head_ratio", "conv_kernel_size", "num_groups")


def convbert_fields(config: BertConfig) -> dict[str, int]:
    missing = [f for f in CONVBERT_FIELDS if f not in config.extra]
    if missing:
        raise ConfigError(f"the config states no {', '.join(missing)}",
                          hint="leave out --config to read them from the weights' shapes, or state them "
                               "(the original's linear_groups is num_groups)")
    return {f: int(config.extra[f]) for f in CONVBERT_FIELDS}


class SeparableConv1D(nn.Module):
    def __init__(self, channels: int, filters: int, size: int):
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, size, groups=channels, padding=size // 2, bias=False)
        self.pointwise = nn.Conv1d(channels, filters, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(filters, 1))

    def forward(self, x):  # [B, C, T]
        return self.pointwise(self.depthwise(x)) + self.bias


class GroupedLinear(nn.Module):
    def __init__(self, n_in: int, n_out: int, groups: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(groups, n_in // groups, n_out // groups))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x):
        groups, n_in, n_out = self.weight.shape
        y = torch.einsum("rgi,gio->rgo", x.reshape(-1, groups, n_in), self.weight)
        return y.reshape(*x.shape[:-1], groups * n_out) + self.bias


def _linear(n_in: int, n_out: int, groups: int) -> nn.Module:
    return nn.Linear(n_in, n_out) if groups == 1 else GroupedLinear(n_in, n_out, groups)


class ConvBertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig, fields: dict):
        super().__init__()
        hidden = config.hidden_size
        self.head_size = hidden // config.num_attention_heads
        self.heads = max(1, config.num_attention_heads // fields["head_ratio"])
        width = self.heads * self.head_size
        self.size = fields["conv_kernel_size"]
        self.query, self.key, self.value = (nn.Linear(hidden, width) for _ in range(3))
        self.key_conv_attn_layer = SeparableConv1D(hidden, width, self.size)
        self.conv_kernel_layer = nn.Linear(width, self.heads * self.size)
        self.conv_out_layer = nn.Linear(hidden, width)

    def forward(self, x, mask_adder):
        batch, seq, _ = x.shape
        n, h, k = self.heads, self.head_size, self.size
        q = self.query(x)
        conv_key = self.key_conv_attn_layer(x.transpose(1, 2)).transpose(1, 2)
        taps = torch.softmax(self.conv_kernel_layer(conv_key * q).reshape(batch, seq, n, k), dim=-1)
        point = F.pad(self.conv_out_layer(x), (0, 0, (k - 1) // 2, k - 1 - (k - 1) // 2))
        windows = point.unfold(1, k, 1).reshape(batch, seq, n, h, k)  # [B, T, A, K] -> heads
        conv = torch.einsum("btnhk,btnk->btnh", windows, taps)

        def split(t):
            return t.reshape(batch, seq, n, h).transpose(1, 2)

        scores = split(q) @ split(self.key(x)).transpose(-1, -2) / math.sqrt(h) + mask_adder
        context = (torch.softmax(scores, dim=-1) @ split(self.value(x))).transpose(1, 2)
        return torch.cat([context, conv], dim=2).reshape(batch, seq, 2 * n * h)


class _Output(nn.Module):
    def __init__(self, n_in: int, hidden: int, groups: int, eps: float):
        super().__init__()
        self.dense = _linear(n_in, hidden, groups)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class ConvBertAttention(nn.Module):
    def __init__(self, config: BertConfig, fields: dict):
        super().__init__()
        self.self = ConvBertSelfAttention(config, fields)
        self.output = _Output(2 * self.self.heads * self.self.head_size, config.hidden_size, 1, config.layer_norm_eps)


class _Intermediate(nn.Module):
    def __init__(self, config: BertConfig, groups: int):
        super().__init__()
        self.dense = _linear(config.hidden_size, config.intermediate_size, groups)


class ConvBertLayer(nn.Module):
    def __init__(self, config: BertConfig, fields: dict):
        super().__init__()
        self.attention = ConvBertAttention(config, fields)
        self.intermediate = _Intermediate(config, fields["num_groups"])
        self.output = _Output(config.intermediate_size, config.hidden_size, fields["num_groups"],
                              config.layer_norm_eps)
        self.act = activation(config.hidden_act)

    def forward(self, x, mask_adder):
        a = self.attention.output(self.attention.self(x, mask_adder), x)
        return self.output(self.act(self.intermediate.dense(a)), a)


class ConvBertEncoder(nn.Module):
    def __init__(self, config: BertConfig, fields: dict):
        super().__init__()
        self.layer = nn.ModuleList(ConvBertLayer(config, fields) for _ in range(config.num_hidden_layers))


class ConvBertEncoderModel(nn.Module):
    """Hugging Face's ``ConvBertModel``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        fields = convbert_fields(config)
        width = config.embedding_size or config.hidden_size
        self.embeddings = BertEmbeddings(dataclasses.replace(config, hidden_size=width, num_attention_heads=1))
        if width != config.hidden_size:
            self.embeddings_project = nn.Linear(width, config.hidden_size)
        self.encoder = ConvBertEncoder(config, fields)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        return encode(self, input_ids, token_type_ids, attention_mask)


class ConvBertForMaskedLM(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.convbert = ConvBertEncoderModel(config)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = GeneratorLMHead(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        results = self.convbert(input_ids, token_type_ids, attention_mask)
        results[out.MLM_LOGITS] = F.linear(self.generator_predictions(results[out.SEQUENCE]),
                                           self.convbert.embeddings.word_embeddings.weight,
                                           self.generator_lm_head.bias)
        return results


def build_model(config: BertConfig, architecture: str, heads: frozenset) -> nn.Module:
    activation(config.hidden_act)
    model = ConvBertForMaskedLM(config) if "mlm" in heads else ConvBertEncoderModel(config)
    model.architecture, model.heads = architecture, frozenset(heads)
    return model.eval()
