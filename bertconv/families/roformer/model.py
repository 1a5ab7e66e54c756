"""bertconv's own PyTorch RoFormer (v1), so that a converted model can be run and checked without
``transformers``.

The module tree is Hugging Face's ``RoFormer*`` state-dict naming. RoFormer is BERT with the
position table replaced by rotary position embeddings: before the scores, each head's query and
key are rotated pair by pair, ``(x[2i], x[2i+1])`` by the angle ``pos * 10000^(-2i/d)``, exactly
as transformers' ``RoFormerSelfAttention.apply_rotary_position_embeddings`` does (the values are
not rotated: ``rotary_value`` is False for v1). Everything else (embeddings LayerNorm, the
post-LayerNorm layers, the MLM head, the optional pooler a source may carry) is computed as
BERT's blocks compute it, so those are reused from ``families/bert/model.py``. The angles are
computed on the fly, not held as a buffer: the state dict is exactly the converted file.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ... import outputs as out
from ...config import BertConfig
from ...errors import InputError
from ..bert.model import (
    BertIntermediate,
    BertLMPredictionHead,
    BertOutput,
    BertPooler,
    BertSelfAttention,
    BertSelfOutput,
    Embedding,
    activation,
    embed,
)

#: the rotary angles' base, fixed in RoFormer
ROTARY_BASE = 10000.0


def rotary_angles(seq_len: int, head_size: int, dtype: torch.dtype, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos), each [T, head_size] with every angle repeated for both members of its pair."""
    # angles in float64 so that a long sequence's positions are not rounded before the sine
    inv_freq = ROTARY_BASE ** (-torch.arange(0, head_size // 2, dtype=torch.float64, device=device) * 2.0 / head_size)
    angles = torch.arange(seq_len, dtype=torch.float64, device=device)[:, None] * inv_freq[None, :]
    sin = torch.repeat_interleave(torch.sin(angles), 2, dim=-1).to(dtype)
    cos = torch.repeat_interleave(torch.cos(angles), 2, dim=-1).to(dtype)
    return sin, cos


def rotate_pairs(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """``x * cos + [-x1, x0, -x3, x2, ...] * sin`` over the last axis."""
    turned = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).reshape_as(x)
    return x * cos + turned * sin


class RoFormerEmbeddings(nn.Module):
    """Word and token-type lookups, then LayerNorm: no position table."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, token_type_ids):
        return self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids))


class RoFormerSelfAttention(BertSelfAttention):
    """BERT's query, key and value; the query and key rotated before the scores."""

    def forward(self, x, mask_adder, sin, cos):
        batch, seq_len, hidden = x.shape

        def heads_first(t):
            return t.view(batch, seq_len, self.num_heads, self.head_size).transpose(1, 2)  # [B, A, T, d]

        query = rotate_pairs(heads_first(self.query(x)), sin, cos)
        key = rotate_pairs(heads_first(self.key(x)), sin, cos)
        value = heads_first(self.value(x))
        scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_size))
        # mask and softmax in at least float32, as BERT's attention does (see there why)
        compute = torch.promote_types(scores.dtype, torch.float32)
        probs = torch.softmax(scores.to(compute) + mask_adder, dim=-1).to(value.dtype)
        return torch.matmul(probs, value).transpose(1, 2).reshape(batch, seq_len, hidden)


class RoFormerAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = RoFormerSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x, mask_adder, sin, cos):
        return self.output(self.self(x, mask_adder, sin, cos), x)


class RoFormerLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = RoFormerAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x, mask_adder, sin, cos):
        attention = self.attention(x, mask_adder, sin, cos)
        return self.output(self.intermediate(attention), attention)


class RoFormerEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(RoFormerLayer(config) for _ in range(config.num_hidden_layers))


class RoFormerEncoderModel(nn.Module):
    """Hugging Face's ``RoFormerModel``, plus the pooler a source may carry (transformers has none:
    it ignores these weights; here they give the original's pooled output to check)."""

    def __init__(self, config: BertConfig, *, with_pooler: bool = False):
        super().__init__()
        self.config = config
        self.embeddings = RoFormerEmbeddings(config)
        self.encoder = RoFormerEncoder(config)
        self.pooler = BertPooler(config) if with_pooler else None

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        x, results, mask_adder = embed(self, input_ids, token_type_ids, attention_mask)
        sin, cos = rotary_angles(input_ids.shape[1], self.config.head_size, x.dtype, x.device)
        for i, layer in enumerate(self.encoder.layer):
            x = layer(x, mask_adder, sin, cos)
            results[out.layer(i)] = x
        results[out.SEQUENCE] = x
        if self.pooler is not None:
            results[out.POOLED] = self.pooler(x)
        return results


class RoFormerOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)


class RoFormerForMaskedLM(nn.Module):
    """``roformer`` plus ``cls.predictions``; the decoder is the word-embedding table itself."""

    def __init__(self, config: BertConfig, *, with_pooler: bool = False):
        super().__init__()
        self.roformer = RoFormerEncoderModel(config, with_pooler=with_pooler)
        self.cls = RoFormerOnlyMLMHead(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        results = self.roformer(input_ids, token_type_ids, attention_mask)
        results[out.MLM_LOGITS] = self.cls.predictions(results[out.SEQUENCE],
                                                       self.roformer.embeddings.word_embeddings.weight)
        return results


def build_model(config: BertConfig, architecture: str, *, with_pooler: bool = False) -> nn.Module:
    """A model of ``architecture`` (its weights are meant to be loaded next)."""
    if config.head_size % 2:
        raise InputError(f"head size {config.head_size} is odd: rotary position embeddings turn pairs")
    activation(config.hidden_act)  # fail on an unknown activation before allocating anything
    if architecture == "RoFormerModel":
        model = RoFormerEncoderModel(config, with_pooler=with_pooler)
        model.heads = frozenset()
    elif architecture == "RoFormerForMaskedLM":
        model = RoFormerForMaskedLM(config, with_pooler=with_pooler)
        model.heads = frozenset({"mlm"})
    else:
        raise InputError(f"unknown architecture {architecture!r}", hint="choose RoFormerModel or RoFormerForMaskedLM")
    model.architecture = architecture
    return model.eval()
