"""An independent float64 forward pass of google-research/albert's model, written over the original
TensorFlow variable names (plain, or under TF-Hub's ``module/`` prefix).

Like ``bertconv.reference`` it shares nothing with the PyTorch model or the name tables; only the
small numeric helpers (LayerNorm, dense, softmax, GELU) come from there. It follows albert's
modeling.py and run_pretraining.py in inference mode:

- embeddings of width ``embedding_size``: word + token type + the first ``seq_len`` positions,
  LayerNorm; then ``embedding_hidden_mapping_in`` up to ``hidden_size`` when the widths differ;
- ``num_hidden_layers`` layers, layer ``i`` running group ``int(i / layers * groups)``; a group runs
  its ``inner_group_num`` blocks in turn, each: attention (``attention_1``), residual, ``LayerNorm``;
  feed-forward (``ffn_1``), residual, ``LayerNorm_1``;
- attention scores scaled by ``1/sqrt(head_size)`` plus ``(1 - mask) * -10000``; GELU in its tanh
  form for "gelu"; LayerNorm epsilon from the config (1e-12);
- pooler ``tanh(dense(first token))``; MLM ``LayerNorm(act(dense(h)))`` (width ``embedding_size``)
  times the word embeddings transposed plus ``output_bias``; sentence order
  ``pooled @ output_weights^T + output_bias``.
"""
from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from ... import outputs as out
from ...config import BertConfig
from ...errors import InputError
from ..bert.reference import (ACTIVATIONS, _check_inputs, _check_shape, _dense, _layer_norm, _output_weights, _Weights,
                        mask_adder_of, transformer_layer)

_HEAD_TENSORS = {
    "mlm": ("cls/predictions/transform/dense/kernel", "cls/predictions/output_bias"),
    "nsp": ("cls/seq_relationship/output_weights", "cls/seq_relationship/output_bias"),
}
_PREFIXES = ("", "module/")


class _Scoped:
    """The weights seen without the export's prefix."""

    def __init__(self, get: _Weights, prefix: str):
        self._get, self._prefix = get, prefix

    def has(self, name: str) -> bool:
        return self._get.has(self._prefix + name)

    def __call__(self, name: str) -> np.ndarray:
        return self._get(self._prefix + name)


def albert_reference_forward(weights: Any, config: BertConfig, inputs: MappingABC, *,
                             heads: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Every named output of the original ALBERT (see ``bertconv.outputs``), in float64.
    ``heads``: any of ``mlm`` and ``nsp`` (sentence order); by default those present."""
    raw = _Weights(weights)
    prefix = next((p for p in _PREFIXES if raw.has(p + "bert/embeddings/word_embeddings")), None)
    if prefix is None:
        raise InputError("the ALBERT reference needs bert/embeddings/word_embeddings, which is missing")
    get = _Scoped(raw, prefix)
    if config.hidden_act not in ACTIVATIONS:
        raise InputError(f"hidden_act {config.hidden_act!r} is not supported by the reference")
    act = ACTIVATIONS[config.hidden_act]
    extra = config.extra or {}
    groups, inner = extra.get("num_hidden_groups", 1), extra.get("inner_group_num", 1)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (groups, inner)):
        raise InputError(f"num_hidden_groups {groups!r} and inner_group_num {inner!r} must be positive integers")
    eps = config.layer_norm_eps
    hidden, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    width = config.embedding_size or hidden
    num_heads = config.num_attention_heads
    input_ids, token_type_ids, attention_mask = _check_inputs(inputs, config)
    batch, seq_len = input_ids.shape
    chosen = [h for h in _HEAD_TENSORS if all(get.has(n) for n in _HEAD_TENSORS[h])] if heads is None else list(heads)
    for head in chosen:
        if head not in _HEAD_TENSORS:
            raise InputError(f"the ALBERT reference has no head {head!r}", hint="choose from mlm, nsp")
    results: dict[str, np.ndarray] = {}

    word = _check_shape(get("bert/embeddings/word_embeddings"), (config.vocab_size, width),
                        "bert/embeddings/word_embeddings")
    x = word[input_ids]
    x += _check_shape(get("bert/embeddings/token_type_embeddings"), (config.type_vocab_size, width),
                      "bert/embeddings/token_type_embeddings")[token_type_ids]
    x += _check_shape(get("bert/embeddings/position_embeddings"), (config.max_position_embeddings, width),
                      "bert/embeddings/position_embeddings")[:seq_len][None]
    x = _layer_norm(x, get, "bert/embeddings/LayerNorm", eps)
    results[out.EMBEDDINGS] = x
    if width != hidden:
        x = _dense(x, get, "bert/encoder/embedding_hidden_mapping_in", width, hidden)

    mask_adder = mask_adder_of(attention_mask)
    # ALBERT's block (modeling.py's attention_ffn_block) under its own names
    names = ("attention_1/self/query", "attention_1/self/key", "attention_1/self/value",
             "attention_1/output/dense", "LayerNorm", "ffn_1/intermediate/dense",
             "ffn_1/intermediate/output/dense", "LayerNorm_1")

    for i in range(layers):
        group = int(i / layers * groups)
        for j in range(inner):
            x = transformer_layer(x, get, f"bert/encoder/transformer/group_{group}/inner_group_{j}", names,
                                  mask_adder, num_heads=num_heads, inter=inter, act=act, eps=eps)
        results[out.layer(i)] = x
    results[out.SEQUENCE] = x

    pooled = None
    if get.has("bert/pooler/dense/kernel"):
        pooled = np.tanh(_dense(x[:, 0, :], get, "bert/pooler/dense", hidden, hidden))
        results[out.POOLED] = pooled
    if "mlm" in chosen:
        transform = act(_dense(x, get, "cls/predictions/transform/dense", hidden, width))
        transform = _layer_norm(transform, get, "cls/predictions/transform/LayerNorm", eps)
        bias = _check_shape(get("cls/predictions/output_bias"), (config.vocab_size,), "cls/predictions/output_bias")
        results[out.MLM_LOGITS] = transform @ word.T + bias
    if "nsp" in chosen:
        if pooled is None:
            raise InputError("the sentence-order head needs the pooler, which is missing", tensor="bert/pooler/dense/kernel")
        results[out.NSP_LOGITS] = _output_weights(pooled, get, "cls/seq_relationship", hidden, 2)
    return results
