"""An independent float64 forward pass of google-research's MobileBERT, over the original
TensorFlow variable names, following modeling.py (2020: ``-10000`` for padded keys) and
run_pretraining.py's heads step by step; the structure is read from the config exactly as
modeling.py's ``BertConfig.from_dict`` fills it (embedding and bottleneck widths default to the
hidden width)."""
from __future__ import annotations

import math
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from ... import outputs as out
from ...config import BertConfig
from ...errors import InputError
from ..bert.reference import ACTIVATIONS, _dense, _layer_norm, _softmax, _Weights, mask_adder_of

HEAD_TENSORS = {
    "mlm": ("cls/predictions/transform/dense/kernel", "cls/predictions/output_bias"),
    "nsp": ("cls/seq_relationship/output_weights", "cls/seq_relationship/output_bias"),
    "classifier": ("output_weights", "output_bias"),
}


def _norm(x, get, scope: str, kind: str, eps: float):
    if kind == "no_norm":
        return x * get(f"{scope}/FakeLayerNorm/gamma") + get(f"{scope}/FakeLayerNorm/beta")
    return _layer_norm(x, get, f"{scope}/LayerNorm", eps)


def _linear(x, get, scope):
    kernel = get(f"{scope}/kernel")
    return x @ kernel + get(f"{scope}/bias")


def mobilebert_reference_forward(weights: Any, config: BertConfig, inputs: MappingABC, *,
                                 heads: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    get = _Weights(weights)
    c = config.extra
    act = ACTIVATIONS[config.hidden_act]
    eps, hidden = config.layer_norm_eps, config.hidden_size
    kind = c.get("normalization_type", "layer_norm")
    embedding = config.embedding_size or hidden
    bottleneck = c.get("use_bottleneck", False)
    inner = (c.get("intra_bottleneck_size") or hidden) if bottleneck else hidden
    heads_n = config.num_attention_heads
    head_size = inner // heads_n
    input_ids = np.asarray(inputs["input_ids"])
    batch, seq_len = input_ids.shape
    types = np.asarray(inputs.get("token_type_ids", np.zeros_like(input_ids)))
    mask = np.asarray(inputs.get("attention_mask", np.ones_like(input_ids)))
    chosen = [h for h, names in HEAD_TENSORS.items() if all(get.has(n) for n in names)] if heads is None \
        else list(heads)

    results: dict[str, np.ndarray] = {}
    word = get("bert/embeddings/word_embeddings")
    if word.shape != (config.vocab_size, embedding):
        raise InputError(f"shape {list(word.shape)} is not [{config.vocab_size}, {embedding}]",
                         tensor="bert/embeddings/word_embeddings")
    x = word[input_ids]
    if c.get("trigram_input", False):
        zeros = np.zeros((batch, 1, embedding))
        x = np.concatenate([np.concatenate([x[:, 1:], zeros], 1), x, np.concatenate([zeros, x[:, :-1]], 1)], 2)
    if c.get("trigram_input", False) or embedding != hidden:
        x = _linear(x, get, "bert/embeddings/embedding_transformation")
    x = x + get("bert/embeddings/token_type_embeddings")[types]
    x = x + get("bert/embeddings/position_embeddings")[:seq_len][None]
    x = _norm(x, get, "bert/embeddings", kind, eps)
    results[out.EMBEDDINGS] = x
    adder = mask_adder_of(mask)

    for i in range(config.num_hidden_layers):
        scope = f"bert/encoder/layer_{i}"
        q = k = v = layer_input = x
        if bottleneck:
            layer_input = _norm(_linear(x, get, f"{scope}/bottleneck/input/dense"), get, f"{scope}/bottleneck/input",
                                kind, eps)
            if c.get("use_bottleneck_attention", False):
                q = k = v = layer_input
            elif c.get("key_query_shared_bottleneck", False):
                q = k = _norm(_linear(x, get, f"{scope}/bottleneck/attention/dense"), get,
                              f"{scope}/bottleneck/attention", kind, eps)

        def split(t):
            return t.reshape(batch, seq_len, heads_n, head_size).transpose(0, 2, 1, 3)

        query = split(_linear(q, get, f"{scope}/attention/self/query"))
        key = split(_linear(k, get, f"{scope}/attention/self/key"))
        value = split(_linear(v, get, f"{scope}/attention/self/value"))
        scores = query @ key.transpose(0, 1, 3, 2) * (1.0 / math.sqrt(head_size)) + adder
        context = (_softmax(scores) @ value).transpose(0, 2, 1, 3).reshape(batch, seq_len, inner)
        h = _norm(_linear(context, get, f"{scope}/attention/output/dense") + layer_input, get,
                  f"{scope}/attention/output", kind, eps)
        for j in range(int(c.get("num_feedforward_networks", 1)) - 1):
            f = f"{scope}/ffn_layer_{j}"
            h = _norm(_linear(act(_linear(h, get, f"{f}/intermediate/dense")), get, f"{f}/output/dense") + h, get,
                      f"{f}/output", kind, eps)
        y = _norm(_linear(act(_linear(h, get, f"{scope}/intermediate/dense")), get, f"{scope}/output/dense") + h,
                  get, f"{scope}/output", kind, eps)
        if bottleneck:
            y = _norm(_linear(y, get, f"{scope}/output/bottleneck/dense") + x, get, f"{scope}/output/bottleneck",
                      kind, eps)
        x = y
        results[out.layer(i)] = x
    results[out.SEQUENCE] = x
    first = x[:, 0]
    if c.get("classifier_activation", True):
        if get.has("bert/pooler/dense/kernel"):
            results[out.POOLED] = np.tanh(_dense(first, get, "bert/pooler/dense", hidden, hidden))
    else:
        results[out.POOLED] = first
    if "mlm" in chosen:
        t = _layer_norm(act(_linear(x, get, "cls/predictions/transform/dense")), get,
                        "cls/predictions/transform/LayerNorm", eps)
        table = word
        if get.has("cls/predictions/extra_output_weights"):
            table = np.concatenate([word, get("cls/predictions/extra_output_weights")], 1)
        results[out.MLM_LOGITS] = t @ table.T + get("cls/predictions/output_bias")
    if "nsp" in chosen and out.POOLED in results:
        results[out.NSP_LOGITS] = results[out.POOLED] @ get("cls/seq_relationship/output_weights").T + \
            get("cls/seq_relationship/output_bias")
    if "classifier" in chosen and out.POOLED in results:
        results[out.CLASSIFIER_LOGITS] = results[out.POOLED] @ get("output_weights").T + get("output_bias")
    return results
