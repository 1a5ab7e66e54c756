"""An independent float64 forward pass of NEZHA as NEZHA-TensorFlow's modeling.py computes it,
over the original (Google-layout) TensorFlow names.

It shares no code with the PyTorch model or the mapping tables; from BERT's reference it takes the
generic pieces (dense, LayerNorm, softmax, output weights, input checks, lazy weight access).
Following modeling.py's ``attention_layer`` (inference mode, so dropout is the identity):

- embeddings: word lookup + token-type lookup, then LayerNorm (epsilon 1e-12); no position table;
- relative positions: the table ``T[r, 2k] = sin(r / 10000^(2k/d))``, ``T[r, 2k+1] = cos(...)``
  for ``r`` in 0..128, gathered at ``clip(j - i, -64, 64) + 64`` for query ``i`` and key ``j``;
  scores ``(q.k_j + q.T[i, j]) / sqrt(d)`` plus ``-10000`` on padded keys; context
  ``sum_j p_ij (v_j + T[i, j])``;
- bert4keras' NEZHA stores that table: where a source has it, it is the one used;
- ``"gelu"`` is the tanh approximation; the MLM head's LayerNorm epsilon is the encoder's unless
  the config states ``mlm_layer_norm_eps`` (bert4keras' NEZHA); pooler, MLM, NSP and classifier heads as BERT's scripts
  (run_pretraining.py, run_classifier.py).

The relative term is computed here with explicit loops over the table's rows rather than a gather:
the same numbers by another route.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from ... import outputs as out
from ...config import BertConfig
from ...errors import InputError
from ..bert.reference import (
    ACTIVATIONS,
    _check_shape,
    _decode,
    _dense,
    _layer_norm,
    _output_weights,
    _softmax,
    _Weights,
    mask_adder_of,
)
from ..bert.reference import HEAD_TENSORS as BERT_HEAD_TENSORS

CLIP = 64
HEAD_TENSORS = {h: BERT_HEAD_TENSORS[h] for h in ("mlm", "nsp", "classifier")}
_POOLER = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")


def sinusoid_rows(depth: int) -> np.ndarray:
    """[129, depth] modeling.py's table, element by element as its loop writes it."""
    table = np.zeros((2 * CLIP + 1, depth))
    for pos in range(2 * CLIP + 1):
        for i in range(depth // 2):
            table[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / depth))
            table[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / depth))
    # modeling.py casts the table to float32 before it is used
    return table.astype(np.float32).astype(np.float64)


#: the canonical name of the table bert4keras stores (NEZHA-TensorFlow computes it)
STORED_TABLE = "bert/encoder/relative_positions"


def relative_matrix(seq_len: int, depth: int, table: np.ndarray | None = None) -> np.ndarray:
    """[T, T, depth]: the row of (query i, key j), of ``table`` (default: modeling.py's)."""
    table = sinusoid_rows(depth) if table is None else table.astype(np.float64)
    rel = np.empty((seq_len, seq_len, depth))
    for i in range(seq_len):
        for j in range(seq_len):
            rel[i, j] = table[min(max(j - i, -CLIP), CLIP) + CLIP]
    return rel


def _layer(x, get, scope, mask_adder, rel, *, num_heads, inter, act, eps):
    batch, seq_len, hidden = x.shape
    d = hidden // num_heads

    def split(t):
        return t.reshape(batch, seq_len, num_heads, d).transpose(0, 2, 1, 3)

    q = split(_dense(x, get, f"{scope}/attention/self/query", hidden, hidden))
    k = split(_dense(x, get, f"{scope}/attention/self/key", hidden, hidden))
    v = split(_dense(x, get, f"{scope}/attention/self/value", hidden, hidden))
    # q_i . T[i, j] for every i, j: one [d] x [T, d] product per query position
    positional = np.stack([q[:, :, i, :] @ rel[i].T for i in range(seq_len)], axis=2)
    scores = (q @ k.transpose(0, 1, 3, 2) + positional) / math.sqrt(d) + mask_adder
    probs = _softmax(scores)
    context = probs @ v + np.stack([probs[:, :, i, :] @ rel[i] for i in range(seq_len)], axis=2)
    context = context.transpose(0, 2, 1, 3).reshape(batch, seq_len, hidden)
    attention = _layer_norm(_dense(context, get, f"{scope}/attention/output/dense", hidden, hidden) + x,
                            get, f"{scope}/attention/output/LayerNorm", eps)
    intermediate = act(_dense(attention, get, f"{scope}/intermediate/dense", hidden, inter))
    return _layer_norm(_dense(intermediate, get, f"{scope}/output/dense", inter, hidden) + attention,
                       get, f"{scope}/output/LayerNorm", eps)


def nezha_reference_forward(weights: Any, config: BertConfig, inputs: MappingABC, *,
                            heads: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Every named output of the original NEZHA in float64. ``heads``: of ``mlm``, ``nsp``,
    ``classifier``; by default every head whose tensors are present."""
    get = _Weights(weights)
    if config.hidden_act not in ACTIVATIONS:
        raise InputError(f"hidden_act {config.hidden_act!r} is not supported by the NEZHA reference",
                         hint=f"known: {', '.join(ACTIVATIONS)}")
    act = ACTIVATIONS[config.hidden_act]
    eps = config.layer_norm_eps
    hidden, inter, num_heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    input_ids = np.asarray(inputs["input_ids"])
    token_type_ids = np.asarray(inputs.get("token_type_ids", np.zeros_like(input_ids)))
    attention_mask = np.asarray(inputs.get("attention_mask", np.ones_like(input_ids)))
    batch, seq_len = input_ids.shape

    chosen = [h for h, names in HEAD_TENSORS.items() if all(get.has(n) for n in names)] \
        if heads is None else list(heads)
    for head in chosen:
        if head not in HEAD_TENSORS:
            raise InputError(f"the NEZHA reference has no head {head!r}", hint=f"choose from {', '.join(HEAD_TENSORS)}")
        for name in HEAD_TENSORS[head]:
            if not get.has(name):
                raise InputError(f"head {head!r} was asked for but its tensor is missing", tensor=name)

    results: dict[str, np.ndarray] = {}
    word = _check_shape(get.stored("bert/embeddings/word_embeddings"), (config.vocab_size, hidden),
                        "bert/embeddings/word_embeddings")
    x = word[input_ids].astype(np.float64)
    del word
    segment = _check_shape(get("bert/embeddings/token_type_embeddings"), (config.type_vocab_size, hidden),
                           "bert/embeddings/token_type_embeddings")
    x = _layer_norm(x + segment[token_type_ids], get, "bert/embeddings/LayerNorm", eps)
    results[out.EMBEDDINGS] = x

    mask_adder = mask_adder_of(attention_mask)
    stored = _check_shape(get(STORED_TABLE), (2 * CLIP + 1, hidden // num_heads), STORED_TABLE) \
        if get.has(STORED_TABLE) else None
    rel = relative_matrix(seq_len, hidden // num_heads, stored)
    for i in range(config.num_hidden_layers):
        x = _layer(x, get, f"bert/encoder/layer_{i}", mask_adder, rel, num_heads=num_heads, inter=inter,
                   act=act, eps=eps)
        results[out.layer(i)] = x
    results[out.SEQUENCE] = x

    pooled = None
    if all(get.has(n) for n in _POOLER):
        pooled = np.tanh(_dense(x[:, 0, :], get, "bert/pooler/dense", hidden, hidden))
        results[out.POOLED] = pooled
    if "mlm" in chosen:
        mlm_eps = config.extra.get("mlm_layer_norm_eps")
        transform = _layer_norm(act(_dense(x, get, "cls/predictions/transform/dense", hidden, hidden)),
                                get, "cls/predictions/transform/LayerNorm", eps if mlm_eps is None else mlm_eps)
        bias = _check_shape(get("cls/predictions/output_bias"), (config.vocab_size,), "cls/predictions/output_bias")
        results[out.MLM_LOGITS] = _decode(transform.reshape(-1, hidden), get.stored("bert/embeddings/word_embeddings"),
                                          bias).reshape(batch, seq_len, config.vocab_size)
    if "nsp" in chosen or "classifier" in chosen:
        if pooled is None:
            raise InputError("the next-sentence and classifier heads need the pooler, which is missing",
                             tensor=_POOLER[0])
    if "nsp" in chosen:
        results[out.NSP_LOGITS] = _output_weights(pooled, get, "cls/seq_relationship", hidden, 2)
    if "classifier" in chosen:
        results[out.CLASSIFIER_LOGITS] = _output_weights(pooled, get, "", hidden)
    return results
