"""bertconv's own PyTorch ALBERT: the module tree is Hugging Face's ``Albert*`` state-dict naming
(``albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight``), so a converted
file loads here and in ``transformers`` alike. Inference only.

Numerics follow google-research/albert: embeddings of width ``embedding_size`` mapped up by
``embedding_hidden_mapping_in``; layer ``i`` runs group ``int(i / layers * groups)``, whose inner
blocks each do attention + residual + LayerNorm, then FFN + residual + ``full_layer_layer_norm``;
the additive mask ``(1 - mask) * -10000``; ``hidden_act`` in Hugging Face's meaning (``gelu_new``
is the tanh GELU ALBERT computes). The MLM decoder is the word-embedding matrix itself.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ... import outputs as out
from ...config import BertConfig
from ...errors import ConfigError
from ..bert.model import BertEmbeddings, BertSelfAttention, activation, embed

def _groups(config: BertConfig) -> tuple[int, int]:
    extra = config.extra or {}
    groups, inner = extra.get("num_hidden_groups", 1), extra.get("inner_group_num", 1)
    if not (isinstance(groups, int) and isinstance(inner, int) and groups >= 1 and inner >= 1):
        raise ConfigError(f"num_hidden_groups {groups!r} and inner_group_num {inner!r} must be positive integers")
    return groups, inner


class AlbertAttention(BertSelfAttention):
    """query/key/value, the output ``dense`` and the ``LayerNorm`` after the residual, in one module."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, mask_adder):
        return self.LayerNorm(self.dense(super().forward(x, mask_adder)) + x)


class AlbertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = AlbertAttention(config)
        self.ffn = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.full_layer_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.act = activation(config.hidden_act)

    def forward(self, x, mask_adder):
        attention = self.attention(x, mask_adder)
        return self.full_layer_layer_norm(self.ffn_output(self.act(self.ffn(attention))) + attention)


class AlbertLayerGroup(nn.Module):
    def __init__(self, config: BertConfig, inner: int):
        super().__init__()
        self.albert_layers = nn.ModuleList(AlbertLayer(config) for _ in range(inner))

    def forward(self, x, mask_adder):
        for layer in self.albert_layers:
            x = layer(x, mask_adder)
        return x


class AlbertTransformer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        groups, inner = _groups(config)
        self.embedding_hidden_mapping_in = nn.Linear(config.embedding_size or config.hidden_size, config.hidden_size)
        self.albert_layer_groups = nn.ModuleList(AlbertLayerGroup(config, inner) for _ in range(groups))


class AlbertEncoderModel(nn.Module):
    """Hugging Face's ``AlbertModel``: embeddings, the shared-layer encoder, optional pooler."""

    def __init__(self, config: BertConfig, *, with_pooler: bool = True):
        super().__init__()
        self.config = config
        width = config.embedding_size or config.hidden_size
        self.embeddings = BertEmbeddings(dataclasses.replace(config, hidden_size=width, num_attention_heads=1))
        self.encoder = AlbertTransformer(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if with_pooler else None

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        x, results, mask_adder = embed(self, input_ids, token_type_ids, attention_mask)
        x = self.encoder.embedding_hidden_mapping_in(x)
        layers, groups = self.config.num_hidden_layers, len(self.encoder.albert_layer_groups)
        for i in range(layers):
            x = self.encoder.albert_layer_groups[int(i / layers * groups)](x, mask_adder)
            results[out.layer(i)] = x
        results[out.SEQUENCE] = x
        if self.pooler is not None:
            results[out.POOLED] = torch.tanh(self.pooler(x[:, 0]))
        return results


class AlbertMLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        width = config.embedding_size or config.hidden_size
        self.dense = nn.Linear(config.hidden_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.act = activation(config.hidden_act)

    def forward(self, sequence, decoder_weight):
        return F.linear(self.LayerNorm(self.act(self.dense(sequence))), decoder_weight, self.bias)


class AlbertSOPHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.classifier = nn.Linear(config.hidden_size, 2)


class AlbertWithHeads(nn.Module):
    def __init__(self, config: BertConfig, architecture: str, heads: frozenset, *, with_pooler: bool):
        super().__init__()
        self.architecture = architecture
        self.heads = heads
        self.config = config
        self.albert = AlbertEncoderModel(config, with_pooler=with_pooler or "nsp" in self.heads)
        if "mlm" in self.heads:
            self.predictions = AlbertMLMHead(config)
        if "nsp" in self.heads:
            self.sop_classifier = AlbertSOPHead(config)


    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        results = self.albert(input_ids, token_type_ids, attention_mask)
        if "mlm" in self.heads:
            results[out.MLM_LOGITS] = self.predictions(results[out.SEQUENCE],
                                                       self.albert.embeddings.word_embeddings.weight)
        if "nsp" in self.heads:
            results[out.NSP_LOGITS] = self.sop_classifier.classifier(results[out.POOLED])
        return results


def build_model(config: BertConfig, architecture: str, heads: frozenset, *, with_pooler: bool) -> nn.Module:
    """A model of ``architecture`` with ``heads`` (its weights are meant to be loaded next)."""
    activation(config.hidden_act)
    if not heads:
        model = AlbertEncoderModel(config, with_pooler=with_pooler)
        model.architecture, model.heads = architecture, frozenset()
    else:
        model = AlbertWithHeads(config, architecture, heads, with_pooler=with_pooler)
    return model.eval()
