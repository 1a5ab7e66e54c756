"""An independent float64 forward pass of one tower of yitu-opensource/ConvBert's model, written
over the original TensorFlow variable names (model/modeling.py and run_pretraining.py, inference).

- embeddings ``electra/embeddings/*`` as ELECTRA's, then ``<tower>/embeddings_project``;
- each layer's self-attention keeps ``heads / head_ratio`` attention heads of BERT's width
  ``hidden / heads``, and beside them as many span-based dynamic convolution heads: a separable
  conv1d of the layer input (``conv_attn_key``, zero-padded ``SAME``) times the query gives, through
  ``conv_attn_kernel`` and a softmax over the ``K`` taps, a kernel per position and head that
  convolves ``conv_attn_point`` of the input over positions ``t - (K-1)/2 .. t + (K-1)/2``
  (zero-padded at the sequence's ends; padding positions are not masked there). Attention heads and
  convolution heads are concatenated in that order before ``attention/output/dense``;
- the feed-forward is grouped (``g_dense``: the input split in ``groups`` equal parts, each through
  its own ``[in/groups, out/groups]`` kernel) or dense; GELU is the exact erf form for "gelu";
- heads as ELECTRA's: the discriminator's ``dense_1(act(dense(h)))``, the generator's
  ``LayerNorm(act(dense(h)))`` times the word embeddings plus ``output_bias``.
"""
from __future__ import annotations

from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from ... import outputs as out
from ...config import BertConfig
from ...errors import InputError
from ..bert.reference import ATTENTION_MASK_ADDER, _check_inputs, _check_shape, _layer_norm, _softmax, _Weights
from ..electra.reference import ELECTRA_ACTIVATIONS

SCOPES = {"discriminator": "electra", "generator": "generator"}


def _linear(x: np.ndarray, get: _Weights, scope: str) -> np.ndarray:
    kernel, bias = get(f"{scope}/kernel"), get(f"{scope}/bias")
    if kernel.ndim == 3:  # g_dense: [groups, in/groups, out/groups]
        groups, n_in, n_out = kernel.shape
        parts = x.reshape(-1, groups, n_in)
        y = np.einsum("rgi,gio->rgo", parts, kernel).reshape(*x.shape[:-1], groups * n_out)
    else:
        y = x @ kernel
    return y + bias


def _separable_conv1d(x: np.ndarray, get: _Weights, scope: str) -> np.ndarray:
    depthwise = get(f"{scope}/depthwise_kernel")[:, :, 0]  # [K, C]
    size = depthwise.shape[0]
    half = (size - 1) // 2
    padded = np.pad(x, ((0, 0), (half, size - 1 - half), (0, 0)))
    seq = x.shape[1]
    y = sum(padded[:, j:j + seq, :] * depthwise[j] for j in range(size))
    return y @ get(f"{scope}/pointwise_kernel")[0] + get(f"{scope}/bias")


def convbert_layer(x: np.ndarray, get: _Weights, scope: str, mask: np.ndarray, *, heads: int, act,
                   eps: float) -> np.ndarray:
    batch, seq, hidden = x.shape
    head_size = hidden // heads
    base = f"{scope}/attention/self"
    q, k, v = (_linear(x, get, f"{base}/{n}") for n in ("query", "key", "value"))
    width = q.shape[-1]
    attention_heads = width // head_size
    size = get(f"{base}/conv_attn_key/depthwise_kernel").shape[0]

    conv_key = _separable_conv1d(x, get, f"{base}/conv_attn_key")
    taps = _linear(conv_key * q, get, f"{base}/conv_attn_kernel").reshape(batch, seq, attention_heads, size)
    taps = _softmax(taps)
    point = _linear(x, get, f"{base}/conv_attn_point")
    half = (size - 1) // 2
    padded = np.pad(point, ((0, 0), (half, size - 1 - half), (0, 0)))
    windows = np.stack([padded[:, j:j + seq, :] for j in range(size)], axis=-1)  # [B, T, A, K]
    windows = windows.reshape(batch, seq, attention_heads, head_size, size)
    conv = np.einsum("btnhk,btnk->btnh", windows, taps)

    def split(t):
        return t.reshape(batch, seq, attention_heads, head_size).transpose(0, 2, 1, 3)

    scores = split(q) @ split(k).transpose(0, 1, 3, 2) / np.sqrt(head_size)
    scores = scores + ((1.0 - mask.astype(np.float64)) * ATTENTION_MASK_ADDER)[:, None, None, :]
    context = (_softmax(scores) @ split(v)).transpose(0, 2, 1, 3)  # [B, T, n, h]
    mixed = np.concatenate([context, conv], axis=2).reshape(batch, seq, 2 * width)

    attention = _layer_norm(_linear(mixed, get, f"{scope}/attention/output/dense") + x, get,
                            f"{scope}/attention/output/LayerNorm", eps)
    ffn = "g_dense" if get.has(f"{scope}/intermediate/g_dense/kernel") else "dense"
    inner = act(_linear(attention, get, f"{scope}/intermediate/{ffn}"))
    return _layer_norm(_linear(inner, get, f"{scope}/output/{ffn}") + attention, get, f"{scope}/output/LayerNorm", eps)


def convbert_reference_forward(weights: Any, config: BertConfig, inputs: MappingABC, *,
                               tower: str = "discriminator", heads=None) -> dict[str, np.ndarray]:
    """Every named output of one ConvBERT tower, in float64; ``config`` is that tower's; ``heads``:
    the heads to compute (None: those the checkpoint has)."""
    if tower not in SCOPES:
        raise InputError(f"unknown ConvBERT tower {tower!r}", hint="choose discriminator or generator")
    if config.hidden_act not in ELECTRA_ACTIVATIONS:
        raise InputError(f"hidden_act {config.hidden_act!r} is not supported by the reference")
    act = ELECTRA_ACTIVATIONS[config.hidden_act]
    get = _Weights(weights)
    scope = SCOPES[tower]
    eps = config.layer_norm_eps
    hidden = config.hidden_size
    width = config.embedding_size or hidden
    input_ids, token_type_ids, attention_mask = _check_inputs(inputs, config)
    seq_len = input_ids.shape[1]
    embeddings = "generator/embeddings" if tower == "generator" and get.has("generator/embeddings/word_embeddings") \
        else "electra/embeddings"
    results: dict[str, np.ndarray] = {}
    word = _check_shape(get(f"{embeddings}/word_embeddings"), (config.vocab_size, width),
                        f"{embeddings}/word_embeddings")
    x = word[input_ids] + get(f"{embeddings}/token_type_embeddings")[token_type_ids] \
        + get(f"{embeddings}/position_embeddings")[:seq_len][None]
    x = _layer_norm(x, get, f"{embeddings}/LayerNorm", eps)
    results[out.EMBEDDINGS] = x
    if get.has(f"{scope}/embeddings_project/kernel"):
        x = _linear(x, get, f"{scope}/embeddings_project")
    for i in range(config.num_hidden_layers):
        x = convbert_layer(x, get, f"{scope}/encoder/layer_{i}", attention_mask,
                           heads=config.num_attention_heads, act=act, eps=eps)
        results[out.layer(i)] = x
    results[out.SEQUENCE] = x

    def wanted(head: str, tensor: str) -> bool:
        return (heads is None or head in heads) and get.has(tensor)

    if tower == "discriminator" and wanted("discriminator", "discriminator_predictions/dense/kernel"):
        h = act(_linear(x, get, "discriminator_predictions/dense"))
        results[out.DISCRIMINATOR_LOGITS] = _linear(h, get, "discriminator_predictions/dense_1")[..., 0]
    if tower == "generator" and wanted("mlm", "generator_predictions/dense/kernel"):
        h = _layer_norm(act(_linear(x, get, "generator_predictions/dense")), get, "generator_predictions/LayerNorm", eps)
        results[out.MLM_LOGITS] = h @ word.T + get("generator_predictions/output_bias")
    return results
