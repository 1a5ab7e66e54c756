"""An independent float64 forward pass of one tower of google-research/electra's model, written
over the original TensorFlow variable names.

It shares nothing with the PyTorch model or the name tables; only small numeric helpers come from
``bertconv.reference``. It follows ELECTRA's model/modeling.py and run_pretraining.py in inference
mode:

- embeddings ``electra/embeddings/*`` (the generator's own ``generator/embeddings/*`` when it was
  trained untied) of width ``embedding_size``: word + token type + positions, LayerNorm; then
  ``<tower>/embeddings_project`` when the widths differ (``electra`` for the discriminator,
  ``generator`` for the generator);
- BERT's encoder under ``<tower>/encoder/layer_{i}``; GELU is the **exact erf** form for "gelu"
  (ELECTRA's own gelu(), unlike BERT's and ALBERT's), mask adder ``(1 - mask) * -10000``;
- discriminator: ``dense_1(act(dense(h)))`` squeezed to one logit per token; generator:
  ``LayerNorm(act(dense(h)))`` (width ``embedding_size``) times the word embeddings transposed plus
  ``output_bias``. ELECTRA has no pooler.
"""
from __future__ import annotations

from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from ... import outputs as out
from ...config import BertConfig
from ...errors import InputError
from ..bert.reference import (ACTIVATIONS, BERT_LAYER_NAMES, _check_inputs, _check_shape, _dense, _gelu_erf, _gelu_tanh,
                        _layer_norm, _Weights, mask_adder_of, transformer_layer)

#: ELECTRA's get_activation: its "gelu" is the erf form
ELECTRA_ACTIVATIONS = {**ACTIVATIONS, "gelu": _gelu_erf, "gelu_exact": _gelu_erf, "gelu_new": _gelu_tanh}
SCOPES = {"discriminator": "electra", "generator": "generator"}


def electra_reference_forward(weights: Any, config: BertConfig, inputs: MappingABC, *,
                              tower: str = "discriminator") -> dict[str, np.ndarray]:
    """Every named output of one ELECTRA tower, in float64; ``config`` is that tower's."""
    if tower not in SCOPES:
        raise InputError(f"unknown ELECTRA tower {tower!r}", hint="choose discriminator or generator")
    get = _Weights(weights)
    scope = SCOPES[tower]
    if config.hidden_act not in ELECTRA_ACTIVATIONS:
        raise InputError(f"hidden_act {config.hidden_act!r} is not supported by the reference")
    act = ELECTRA_ACTIVATIONS[config.hidden_act]
    eps = config.layer_norm_eps
    hidden, inter = config.hidden_size, config.intermediate_size
    width = config.embedding_size or hidden
    num_heads = config.num_attention_heads
    input_ids, token_type_ids, attention_mask = _check_inputs(inputs, config)
    batch, seq_len = input_ids.shape
    embeddings = "generator/embeddings" if tower == "generator" and get.has("generator/embeddings/word_embeddings") \
        else "electra/embeddings"
    results: dict[str, np.ndarray] = {}

    word = _check_shape(get(f"{embeddings}/word_embeddings"), (config.vocab_size, width),
                        f"{embeddings}/word_embeddings")
    x = word[input_ids]
    x += _check_shape(get(f"{embeddings}/token_type_embeddings"), (config.type_vocab_size, width),
                      f"{embeddings}/token_type_embeddings")[token_type_ids]
    x += _check_shape(get(f"{embeddings}/position_embeddings"), (config.max_position_embeddings, width),
                      f"{embeddings}/position_embeddings")[:seq_len][None]
    x = _layer_norm(x, get, f"{embeddings}/LayerNorm", eps)
    results[out.EMBEDDINGS] = x
    if width != hidden:
        x = _dense(x, get, f"{scope}/embeddings_project", width, hidden)

    mask_adder = mask_adder_of(attention_mask)
    for i in range(config.num_hidden_layers):
        x = transformer_layer(x, get, f"{scope}/encoder/layer_{i}", BERT_LAYER_NAMES, mask_adder,
                              num_heads=num_heads, inter=inter, act=act, eps=eps)
        results[out.layer(i)] = x
    results[out.SEQUENCE] = x

    if tower == "discriminator" and get.has("discriminator_predictions/dense/kernel"):
        h = act(_dense(x, get, "discriminator_predictions/dense", hidden, hidden))
        results[out.DISCRIMINATOR_LOGITS] = _dense(h, get, "discriminator_predictions/dense_1", hidden, 1)[..., 0]
    if tower == "generator" and get.has("generator_predictions/dense/kernel"):
        h = act(_dense(x, get, "generator_predictions/dense", hidden, width))
        h = _layer_norm(h, get, "generator_predictions/LayerNorm", eps)
        bias = _check_shape(get("generator_predictions/output_bias"), (config.vocab_size,),
                            "generator_predictions/output_bias")
        results[out.MLM_LOGITS] = h @ word.T + bias
    return results
