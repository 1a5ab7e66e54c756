"""The original BigBird's forward pass in float64 NumPy over google-research/bigbird's own names,
with full attention (``original_full``: what bigbird/core computes up to 512 tokens): the
embeddings' LayerNorm under ``bert/encoder``, the padding mask from ``input_ids > 0`` as
``BertModel.call`` makes it, BERT's post-norm layers, the pooler's tanh, the MLM transform at the
top level decoded by the word table, and the NSP layer."""
from __future__ import annotations

import numpy as np

from ... import outputs as out
from ...errors import InputError
from ..bert.reference import (ACTIVATIONS, BERT_LAYER_NAMES, _check_inputs, _check_shape, _decode, _dense,
                              _layer_norm, _output_weights, _Weights, mask_adder_of, transformer_layer)
from . import HEAD_TENSORS

_POOLER = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")


def bigbird_reference_forward(weights, config, inputs, *, heads=None) -> dict[str, np.ndarray]:
    get = _Weights(weights)
    if config.hidden_act not in ACTIVATIONS:
        raise InputError(f"hidden_act {config.hidden_act!r} is not supported by the reference",
                         hint=f"known: {', '.join(ACTIVATIONS)}")
    act, eps, hidden = ACTIVATIONS[config.hidden_act], config.layer_norm_eps, config.hidden_size
    input_ids, token_type_ids, _ = _check_inputs(inputs, config)
    batch, seq_len = input_ids.shape
    if heads is None:
        heads = [h for h, names in HEAD_TENSORS.items() if all(get.has(n) for n in names)]
    for head in heads:
        if head not in HEAD_TENSORS:
            raise InputError(f"the BigBird reference has no head {head!r}",
                             hint=f"choose from {', '.join(HEAD_TENSORS)}")
    has_pooler = all(get.has(n) for n in _POOLER)
    if "nsp" in heads and not has_pooler:
        raise InputError("head 'nsp' needs the pooler, which is missing", tensor=_POOLER[0])

    results: dict[str, np.ndarray] = {}
    word = _check_shape(get.stored("bert/embeddings/word_embeddings"), (config.vocab_size, hidden),
                        "bert/embeddings/word_embeddings")
    x = word[input_ids].astype(np.float64)
    x += _check_shape(get("bert/embeddings/token_type_embeddings"), (config.type_vocab_size, hidden),
                      "bert/embeddings/token_type_embeddings")[token_type_ids]
    x += _check_shape(get("bert/embeddings/position_embeddings"), (config.max_position_embeddings, hidden),
                      "bert/embeddings/position_embeddings")[:seq_len][None]
    x = _layer_norm(x, get, "bert/encoder/LayerNorm", eps)  # post-norm: the stack normalises its input
    results[out.EMBEDDINGS] = x

    mask_adder = mask_adder_of((input_ids > 0).astype(np.int64))  # the original's padding rule
    for i in range(config.num_hidden_layers):
        x = transformer_layer(x, get, f"bert/encoder/layer_{i}", BERT_LAYER_NAMES, mask_adder,
                              num_heads=config.num_attention_heads, inter=config.intermediate_size, act=act, eps=eps)
        results[out.layer(i)] = x
    results[out.SEQUENCE] = x
    pooled = None
    if has_pooler:
        pooled = np.tanh(_dense(x[:, 0, :], get, "bert/pooler/dense", hidden, hidden))
        results[out.POOLED] = pooled
    if "mlm" in heads:
        transform = _layer_norm(act(_dense(x, get, "transform", hidden, hidden)), get, "transform", eps)
        bias = _check_shape(get("cls/predictions/output_bias"), (config.vocab_size,), "cls/predictions/output_bias")
        results[out.MLM_LOGITS] = _decode(transform.reshape(-1, hidden), get.stored("bert/embeddings/word_embeddings"),
                                          bias).reshape(batch, seq_len, config.vocab_size)
    if "nsp" in heads:
        results[out.NSP_LOGITS] = _output_weights(pooled, get, "cls/seq_relationship", hidden, 2)
    return results
