"""bertconv's own PyTorch BERT, so that a converted model can be run and checked without
``transformers``.

The module tree *is* the Hugging Face state-dict naming (``bert.encoder.layer.0.attention.self.query
.weight``, ``LayerNorm`` kept in TensorFlow casing), so a converted file loads here and in
``transformers`` alike. It is an inference-only model: no dropout, no training heads' losses.

Numerics follow google-research/bert's modeling.py where the two could differ:

- ``hidden_act`` has Hugging Face's meaning, since it is read from a Hugging Face ``config.json``:
  ``"gelu"`` is the exact erf GELU, ``"gelu_new"``/``"gelu_pytorch_tanh"`` the tanh approximation
  that the original computes;
- the attention mask is added as ``(1 - mask) * -10000.0``, the original's constant (Hugging Face
  now uses the dtype's minimum, which differs only for a row whose keys are all padding);
- scores are scaled by ``1/sqrt(head_size)``; LayerNorm epsilon comes from the config.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ... import outputs as out
from ...config import BertConfig
from ...errors import ConfigError, InputError
from ..base import HEADS_NEEDING_POOLER

#: modeling.py's additive attention-mask value for padded keys (read at call time).
ATTENTION_MASK_VALUE = -10000.0


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {
    "gelu": F.gelu,                  # Hugging Face's "gelu" is the exact erf form
    "gelu_python": F.gelu,
    "gelu_new": _gelu_tanh,          # the tanh approximation google-research/bert computes
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "relu": F.relu,
    "tanh": torch.tanh,
    "silu": F.silu,
    "swish": F.silu,
    "linear": lambda x: x,
}


def activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(f"hidden_act {name!r} is not supported",
                          hint=f"known: {', '.join(ACTIVATIONS)}") from None


# ------------------------------------------------------------------------------------- modules


class Embedding(nn.Embedding):
    """``nn.Embedding`` that draws no values on the meta device: bertconv builds its models there
    and takes every weight from a checkpoint, and a random normal draw on the meta device loads
    PyTorch's Python meta kernels (hundreds of modules: time and memory, docs/performance.md)."""

    def reset_parameters(self) -> None:
        if self.weight.device.type != "meta":
            super().reset_parameters()


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, token_type_ids):
        seq_len = input_ids.shape[1]
        x = self.word_embeddings(input_ids)  # [B, T, H]
        x = x + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings.weight[:seq_len].unsqueeze(0)
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x, mask_adder):
        batch, seq_len, hidden = x.shape

        def heads_first(t):
            return t.view(batch, seq_len, self.num_heads, self.head_size).transpose(1, 2)  # [B, A, T, d]

        query, key, value = heads_first(self.query(x)), heads_first(self.key(x)), heads_first(self.value(x))
        scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_size))  # [B, A, T, T]
        # The mask is added and the softmax taken in at least float32. In float16 the sum
        # ``score - 10000`` keeps only multiples of 8, so a row whose keys are all padding would get
        # a flat distribution instead of the original's softmax over its scores; and an all-masked
        # row is the one case where the constant itself matters, so it must stay -10000 exactly
        # (bfloat16 cannot even hold it: it rounds to -9984).
        compute = torch.promote_types(scores.dtype, torch.float32)
        probs = torch.softmax(scores.to(compute) + mask_adder, dim=-1).to(value.dtype)
        context = torch.matmul(probs, value)  # [B, A, T, d]
        return context.transpose(1, 2).reshape(batch, seq_len, hidden)


class BertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, context, residual):
        return self.LayerNorm(self.dense(context) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x, mask_adder):
        return self.output(self.self(x, mask_adder), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, intermediate, residual):
        return self.LayerNorm(self.dense(intermediate) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x, mask_adder):
        attention = self.attention(x, mask_adder)
        return self.output(self.intermediate(attention), attention)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, sequence):
        return torch.tanh(self.dense(sequence[:, 0]))


def additive_mask(attention_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B, 1, 1, T], one adder for every head and query position: ``(1 - mask) * -10000`` in at
    least float32 (see BertSelfAttention)."""
    dtype = torch.promote_types(like.dtype, torch.float32)
    return ((1.0 - attention_mask.to(dtype)) * ATTENTION_MASK_VALUE)[:, None, None, :]


def embed(model: nn.Module, input_ids, token_type_ids, attention_mask):
    """What every encoder (BERT, ALBERT, ELECTRA) does first: default token types and mask, the
    embeddings (recorded as an output), the mask adder. Returns ``(x, results, mask_adder)``."""
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    x = model.embeddings(input_ids, token_type_ids)
    return x, {out.EMBEDDINGS: x}, additive_mask(attention_mask, x)


def encode(model: nn.Module, input_ids, token_type_ids, attention_mask) -> dict[str, torch.Tensor]:
    """A BERT-shaped encoder's whole forward (BERT, TAPAS, MobileBERT, ELECTRA, ConvBERT):
    :func:`embed`, the projection of narrower embeddings where the model has one
    (``embeddings_project``), each of ``model.encoder.layer`` in turn with its output recorded, and
    ``model.pooler`` where it has one."""
    x, results, mask_adder = embed(model, input_ids, token_type_ids, attention_mask)
    project = getattr(model, "embeddings_project", None)
    if project is not None:
        x = project(x)
    for i, layer in enumerate(model.encoder.layer):
        x = layer(x, mask_adder)
        results[out.layer(i)] = x
    results[out.SEQUENCE] = x
    pooler = getattr(model, "pooler", None)
    if pooler is not None:
        results[out.POOLED] = pooler(x)
    return results


class BertEncoderModel(nn.Module):
    """Hugging Face's ``BertModel``: embeddings, encoder, optional pooler."""

    def __init__(self, config: BertConfig, *, with_pooler: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if with_pooler else None

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        return encode(self, input_ids, token_type_ids, attention_mask)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """The MLM decoder is the word-embedding matrix itself: it is passed in at call time rather
    than held, so the state dict stores it once (as ``bert.embeddings.word_embeddings.weight``)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, sequence, decoder_weight):
        return F.linear(self.transform(sequence), decoder_weight, self.bias)  # [B, T, vocab]


class BertPreTrainingHeads(nn.Module):
    """``cls``: the MLM head (``predictions``) and/or the NSP head (``seq_relationship``)."""

    def __init__(self, config: BertConfig, *, mlm: bool, nsp: bool):
        super().__init__()
        self.predictions = BertLMPredictionHead(config) if mlm else None
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if nsp else None


class BertWithHeads(nn.Module):
    """Every ``BertFor*`` architecture: ``bert`` plus the heads its name implies."""

    def __init__(self, config: BertConfig, architecture: str, heads: frozenset, *, num_labels: int = 2,
                 with_pooler: bool = True):
        super().__init__()
        self.architecture = architecture
        self.heads = heads
        if not with_pooler and self.heads & HEADS_NEEDING_POOLER:
            raise InputError(f"{architecture} needs the pooler")
        self.bert = BertEncoderModel(config, with_pooler=with_pooler)
        if self.heads & {"mlm", "nsp"}:
            self.cls = BertPreTrainingHeads(config, mlm="mlm" in self.heads, nsp="nsp" in self.heads)
        if "classifier" in self.heads:
            self.num_labels = num_labels
            self.classifier = nn.Linear(config.hidden_size, num_labels)
        if "squad" in self.heads:
            self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        results = self.bert(input_ids, token_type_ids, attention_mask)
        sequence = results[out.SEQUENCE]
        if "mlm" in self.heads:
            results[out.MLM_LOGITS] = self.cls.predictions(sequence, self.bert.embeddings.word_embeddings.weight)
        if "nsp" in self.heads:
            results[out.NSP_LOGITS] = self.cls.seq_relationship(results[out.POOLED])
        if "classifier" in self.heads:
            results[out.CLASSIFIER_LOGITS] = self.classifier(results[out.POOLED])
        if "squad" in self.heads:
            results[out.SPAN_LOGITS] = self.qa_outputs(sequence)  # [B, T, 2]: start, end
        return results


def build_model(config: BertConfig, architecture: str = "BertModel", *, num_labels: int = 2,
                with_pooler: bool | None = None) -> nn.Module:
    """A model of ``architecture`` (its weights are meant to be loaded next); with a pooler unless
    Hugging Face builds that class without one (``with_pooler`` overrides)."""
    from . import FAMILY

    heads = FAMILY.architecture_heads.get(architecture)
    if heads is None:
        raise InputError(f"unknown architecture {architecture!r}",
                         hint=f"choose one of {', '.join(FAMILY.architecture_heads)}")
    if with_pooler is None:
        with_pooler = architecture not in FAMILY.without_pooler
    activation(config.hidden_act)  # fail on an unknown activation before allocating anything
    if not heads:
        model = BertEncoderModel(config, with_pooler=with_pooler)
        model.architecture = architecture
        model.heads = frozenset()
    else:
        model = BertWithHeads(config, architecture, heads, num_labels=num_labels, with_pooler=with_pooler)
    return model.eval()
