"""An independent float64 forward pass of google-research/tapas' model, over the original
TensorFlow variable names (the second opinion ``validate`` holds a converted TAPAS against).

It follows tapas/models/bert/modeling.py (inference, no dropout), tapas_pretraining_model.py and
tapas_classifier_model(_utils).py:

- embeddings: the word row, plus one row of each of the seven ``token_type_embeddings_<i>``
  tables (``token_type_ids[..., i]``), plus the position row, then LayerNorm (epsilon 1e-12);
  with ``reset_position_index_per_cell`` the position is ``min(max_positions - 1, t - first)``,
  ``first`` the smallest position of the tokens sharing this token's (column, row) pair;
- the encoder is google-research/bert's (``-10000`` on padded keys, tanh GELU for "gelu");
- MLM as BERT's; cell selection ``(h . output_weights + output_bias) / temperature`` per token;
  aggregation and classification ``pooled @ output_weights_{agg,cls}^T + bias``.
"""
from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from ... import outputs as out
from ...config import BertConfig
from ...errors import InputError
from ..bert.reference import (
    ACTIVATIONS,
    BERT_LAYER_NAMES,
    _check_shape,
    _decode,
    _dense,
    _layer_norm,
    _Weights,
    mask_adder_of,
    transformer_layer,
)
from .layouts import HEAD_TENSORS

TOKEN_TYPES = 7
CELL_LOGITS, AGGREGATION_LOGITS = "cell_logits", "aggregation_logits"

_POOLER = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")


def _token_types(inputs: MappingABC, shape: tuple[int, int], sizes: list[int]) -> np.ndarray:
    types = np.asarray(inputs.get("token_type_ids", np.zeros(shape, np.int64)))
    if types.shape == shape:  # the segment column alone
        full = np.zeros(shape + (TOKEN_TYPES,), np.int64)
        full[..., 0] = types
        types = full
    if types.shape != shape + (TOKEN_TYPES,):
        raise InputError(f"TAPAS token_type_ids are [batch, seq_len, {TOKEN_TYPES}], got {list(types.shape)}")
    for i, size in enumerate(sizes):
        if types[..., i].min() < 0 or types[..., i].max() >= size:
            raise InputError(f"token_type_ids column {i} holds values outside [0, {size})")
    return types


def _positions(types: np.ndarray, seq_len: int, max_positions: int, reset_per_cell: bool) -> np.ndarray:
    position = np.arange(seq_len)
    if not reset_per_cell:
        return np.broadcast_to(position, types.shape[:2])
    first = np.empty(types.shape[:2], np.int64)
    for b in range(types.shape[0]):
        cells: dict[tuple[int, int], int] = {}
        for t in range(seq_len):
            key = (int(types[b, t, 1]), int(types[b, t, 2]))
            first[b, t] = cells.setdefault(key, t)
    return np.minimum(max_positions - 1, position[None, :] - first)


def _linear_rows(x: np.ndarray, get: _Weights, weights: str, bias: str, n_in: int) -> np.ndarray:
    w = get(weights)  # [out, in]: multiplied transposed
    if w.ndim != 2 or w.shape[1] != n_in:
        raise InputError(f"shape {list(w.shape)} is not [n, {n_in}]", tensor=weights)
    return x @ w.T + _check_shape(get(bias), (w.shape[0],), bias)


def tapas_reference_forward(weights: Any, config: BertConfig, inputs: MappingABC, *,
                            heads: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Every named output of the original model in float64; ``heads`` as BERT's reference's
    (default: every head whose tensors are present), NSP included."""
    get = _Weights(weights)
    if config.hidden_act not in ACTIVATIONS:
        raise InputError(f"hidden_act {config.hidden_act!r} is not supported by the reference",
                         hint=f"known: {', '.join(ACTIVATIONS)}")
    act, eps = ACTIVATIONS[config.hidden_act], config.layer_norm_eps
    hidden = config.hidden_size
    sizes = config.extra.get("type_vocab_sizes")
    if not isinstance(sizes, list) or len(sizes) != TOKEN_TYPES:
        raise InputError(f"a TAPAS config needs type_vocab_sizes, {TOKEN_TYPES} sizes; got {sizes!r}")
    input_ids = np.asarray(inputs["input_ids"])
    batch, seq_len = input_ids.shape
    if seq_len > config.max_position_embeddings:
        raise InputError(f"seq_len {seq_len} exceeds max_position_embeddings {config.max_position_embeddings}")
    attention_mask = np.asarray(inputs.get("attention_mask", np.ones_like(input_ids)))
    types = _token_types(inputs, (batch, seq_len), sizes)
    chosen = [h for h, names in HEAD_TENSORS.items() if all(get.has(n) for n in names)] if heads is None \
        else list(heads)
    unknown = [h for h in chosen if h not in HEAD_TENSORS]
    if unknown:
        raise InputError(f"the TAPAS reference has no head {unknown[0]!r}", hint=f"choose from {', '.join(HEAD_TENSORS)}")

    results: dict[str, np.ndarray] = {}
    word = _check_shape(get.stored("bert/embeddings/word_embeddings"), (config.vocab_size, hidden),
                        "bert/embeddings/word_embeddings")
    x = word[input_ids].astype(np.float64)
    for i, size in enumerate(sizes):
        name = f"bert/embeddings/token_type_embeddings_{i}"
        x += _check_shape(get(name), (size, hidden), name)[types[..., i]]
    table = _check_shape(get("bert/embeddings/position_embeddings"), (config.max_position_embeddings, hidden),
                         "bert/embeddings/position_embeddings")
    reset = bool(config.extra.get("reset_position_index_per_cell", False))
    x += table[_positions(types, seq_len, config.max_position_embeddings, reset)]
    x = _layer_norm(x, get, "bert/embeddings/LayerNorm", eps)
    results[out.EMBEDDINGS] = x

    mask_adder = mask_adder_of(attention_mask)
    for i in range(config.num_hidden_layers):
        x = transformer_layer(x, get, f"bert/encoder/layer_{i}", BERT_LAYER_NAMES, mask_adder,
                              num_heads=config.num_attention_heads, inter=config.intermediate_size, act=act, eps=eps)
        results[out.layer(i)] = x
    results[out.SEQUENCE] = x
    pooled = None
    if all(get.has(n) for n in _POOLER):
        pooled = np.tanh(_dense(x[:, 0, :], get, "bert/pooler/dense", hidden, hidden))
        results[out.POOLED] = pooled
    if pooled is None and set(chosen) & {"nsp", "classifier", "table_qa"}:
        raise InputError("the TAPAS heads on the pooled output need the pooler, which is missing", tensor=_POOLER[0])

    if "mlm" in chosen:
        transform = act(_dense(x, get, "cls/predictions/transform/dense", hidden, hidden))
        transform = _layer_norm(transform, get, "cls/predictions/transform/LayerNorm", eps)
        bias = _check_shape(get("cls/predictions/output_bias"), (config.vocab_size,), "cls/predictions/output_bias")
        results[out.MLM_LOGITS] = _decode(transform.reshape(-1, hidden), word, bias).reshape(
            batch, seq_len, config.vocab_size)
    if "nsp" in chosen:
        results[out.NSP_LOGITS] = _linear_rows(pooled, get, "cls/seq_relationship/output_weights",
                                               "cls/seq_relationship/output_bias", hidden)
    if "table_qa" in chosen:
        temperature = float(config.extra.get("temperature", 1.0))
        w = _check_shape(get("output_weights"), (hidden,), "output_weights")
        b = _check_shape(get("output_bias"), (), "output_bias")
        results[CELL_LOGITS] = (x @ w + b) / temperature
        if get.has("output_weights_agg"):
            results[AGGREGATION_LOGITS] = _linear_rows(pooled, get, "output_weights_agg", "output_bias_agg", hidden)
    if "classifier" in chosen:
        results[out.CLASSIFIER_LOGITS] = _linear_rows(pooled, get, "output_weights_cls", "output_bias_cls", hidden)
    return results
