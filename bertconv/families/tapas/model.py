"""bertconv's own PyTorch TAPAS, so that a converted model can be run and checked without
``transformers``.

The module tree is Hugging Face's ``Tapas*`` state-dict naming. TAPAS is BERT with seven
token-type tables, so everything after the embeddings is BERT's blocks (``families/bert/model.py``).
``token_type_ids`` are ``[B, T, 7]``; a ``[B, T]`` array is read as the segment column alone (the
other six columns 0), as for text without a table.

Positions: with ``reset_position_index_per_cell`` each token's position is its distance from the
first token of its cell (a cell is a (column, row) pair of token-type columns 1 and 2; the
question and padding, column 0 and row 0, are one cell), capped at the last table row, as
modeling.py's ``_get_relative_position_embeddings`` computes it; otherwise 0, 1, 2...

Heads: the masked LM (``TapasForMaskedLM``, BERT's), cell selection and aggregation
(``TapasForQuestionAnswering``: ``(h . output_weights + output_bias) / temperature`` per token, and
``aggregation_classifier`` on the pooled output) and the sequence classifier on the pooled output.
"""
from __future__ import annotations

import torch
from torch import nn

from ... import outputs as out
from ...config import BertConfig
from ...errors import ConfigError, InputError
from ..bert.model import BertEncoder, BertLMPredictionHead, BertPooler, Embedding, activation, encode

TOKEN_TYPES = 7
CELL_LOGITS = "cell_logits"                # [B, T] per-token cell selection logits
AGGREGATION_LOGITS = "aggregation_logits"  # [B, num_aggregation_labels]


def type_vocab_sizes(config: BertConfig) -> list[int]:
    sizes = config.extra.get("type_vocab_sizes")
    if not isinstance(sizes, list) or len(sizes) != TOKEN_TYPES:
        raise ConfigError(f"a TAPAS config needs type_vocab_sizes, a list of {TOKEN_TYPES} sizes, got {sizes!r}")
    return sizes


def token_type_columns(token_type_ids: torch.Tensor) -> torch.Tensor:
    """[B, T, 7]: a [B, T] array is the segment column, the table columns 0."""
    if token_type_ids.dim() == 2:
        full = torch.zeros(*token_type_ids.shape, TOKEN_TYPES, dtype=token_type_ids.dtype, device=token_type_ids.device)
        full[..., 0] = token_type_ids
        return full
    if token_type_ids.dim() != 3 or token_type_ids.shape[-1] != TOKEN_TYPES:
        raise InputError(f"TAPAS token_type_ids are [batch, seq_len, {TOKEN_TYPES}], got {list(token_type_ids.shape)}")
    return token_type_ids


def cell_positions(token_types: torch.Tensor, max_positions: int) -> torch.Tensor:
    """[B, T]: each token's distance from the first token of its (column, row) cell, capped."""
    batch, seq_len, _ = token_types.shape
    position = torch.arange(seq_len, device=token_types.device)
    column, row = token_types[..., 1], token_types[..., 2]
    same_cell = (column[:, :, None] == column[:, None, :]) & (row[:, :, None] == row[:, None, :])  # [B, T, T]
    first = torch.where(same_cell, position[None, None, :], seq_len).min(dim=-1).values
    return torch.clamp(position[None, :] - first, max=max_positions - 1)


class TapasEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.reset_position_index_per_cell = bool(config.extra.get("reset_position_index_per_cell", False))
        self.max_positions = config.max_position_embeddings
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size)
        for i, size in enumerate(type_vocab_sizes(config)):
            setattr(self, f"token_type_embeddings_{i}", Embedding(size, config.hidden_size))
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, token_type_ids):
        types = token_type_columns(token_type_ids)
        for i in range(TOKEN_TYPES):
            size = getattr(self, f"token_type_embeddings_{i}").num_embeddings
            if types.numel() and (int(types[..., i].min()) < 0 or int(types[..., i].max()) >= size):
                raise InputError(f"token_type_ids column {i} holds values outside [0, {size})")
        x = self.word_embeddings(input_ids)
        for i in range(TOKEN_TYPES):
            x = x + getattr(self, f"token_type_embeddings_{i}")(types[..., i])
        if self.reset_position_index_per_cell:
            x = x + self.position_embeddings(cell_positions(types, self.max_positions))
        else:
            x = x + self.position_embeddings.weight[:input_ids.shape[1]].unsqueeze(0)
        return self.LayerNorm(x)


class TapasEncoderModel(nn.Module):
    """Hugging Face's ``TapasModel``: embeddings, BERT's encoder, optional pooler."""

    def __init__(self, config: BertConfig, *, with_pooler: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = TapasEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if with_pooler else None

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        return encode(self, input_ids, token_type_ids, attention_mask)


class TapasOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)


class TapasWithHeads(nn.Module):
    """Every ``TapasFor*`` architecture: ``tapas`` plus the head its name implies."""

    def __init__(self, config: BertConfig, architecture: str, heads: frozenset, *, num_labels: int,
                 with_pooler: bool):
        super().__init__()
        self.architecture, self.heads = architecture, heads
        self.tapas = TapasEncoderModel(config, with_pooler=with_pooler)
        if "mlm" in heads:
            self.cls = TapasOnlyMLMHead(config)
        if "table_qa" in heads:
            self.temperature = float(config.extra.get("temperature", 1.0))
            self.output_weights = nn.Parameter(torch.empty(config.hidden_size))
            self.output_bias = nn.Parameter(torch.empty(()))
            self.column_output_weights = nn.Parameter(torch.empty(config.hidden_size))
            self.column_output_bias = nn.Parameter(torch.empty(()))
            aggregation = int(config.extra.get("num_aggregation_labels", 0) or 0)
            self.aggregation_classifier = nn.Linear(config.hidden_size, aggregation) if aggregation else None
        if "classifier" in heads:
            self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        results = self.tapas(input_ids, token_type_ids, attention_mask)
        sequence = results[out.SEQUENCE]
        if "mlm" in self.heads:
            results[out.MLM_LOGITS] = self.cls.predictions(sequence, self.tapas.embeddings.word_embeddings.weight)
        if "table_qa" in self.heads:
            results[CELL_LOGITS] = (sequence @ self.output_weights + self.output_bias) / self.temperature
            if self.aggregation_classifier is not None:
                results[AGGREGATION_LOGITS] = self.aggregation_classifier(results[out.POOLED])
        if "classifier" in self.heads:
            results[out.CLASSIFIER_LOGITS] = self.classifier(results[out.POOLED])
        return results


def build_model(config: BertConfig, architecture: str, heads: frozenset, *, num_labels: int = 2,
                with_pooler: bool = True) -> nn.Module:
    """A model of ``architecture`` (its weights are meant to be loaded next)."""
    activation(config.hidden_act)  # fail on an unknown activation before allocating anything
    type_vocab_sizes(config)
    if not heads:
        model = TapasEncoderModel(config, with_pooler=with_pooler)
    else:
        model = TapasWithHeads(config, architecture, heads, num_labels=num_labels, with_pooler=with_pooler)
    model.architecture, model.heads = architecture, heads
    return model.eval()
