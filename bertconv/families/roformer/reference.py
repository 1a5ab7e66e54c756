"""An independent float64 forward pass of RoFormer v1 as bert4keras computes it, written over the
canonical (Google-layout) TensorFlow names.

It shares no code with the PyTorch model or the mapping tables; from BERT's reference it takes
only the generic pieces (dense, LayerNorm, softmax, input checks, lazy weight access). It follows
bert4keras 0.11's ``RoFormer`` (inference mode, so dropout is the identity):

- embeddings: word lookup + token-type lookup, then LayerNorm; no position table;
- each layer: query, key, value dense; the query and the key of every head rotated by position
  (``SinusoidalPositionEmbedding`` with base 10000, applied to pairs ``(2i, 2i+1)``); scores
  scaled by ``1/sqrt(head_size)``; padded keys masked before the softmax; then BERT's
  post-LayerNorm residual blocks;
- LayerNorm epsilon: the config's (1e-7 for bert4keras' RoFormer, its LayerNormalization default)
  in the encoder, 1e-12 in the MLM head, which bert4keras builds with that epsilon;
- ``"gelu"`` is the exact erf form (bert4keras registers ``gelu_erf`` under that name);
- pooler ``tanh(dense(first token))``; MLM ``LayerNorm(act(dense(h))) @ word_embeddings^T + bias``.

The rotation is written here as complex multiplication, ``(x[2i] + i x[2i+1]) * exp(i pos theta_i)``,
rather than bert4keras' sin/cos interleaving: the same numbers by another route.
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
    _check_inputs,
    _check_shape,
    _decode,
    _dense,
    _layer_norm,
    _softmax,
    _Weights,
    mask_adder_of,
)

#: bert4keras' MLM-Norm epsilon (BERT.apply_final_layers passes it; the encoder keeps K.epsilon())
MLM_LAYER_NORM_EPS = 1e-12
ROTARY_BASE = 10000.0

#: what bert4keras computes for each activation name (its "gelu" is the erf form)
_ACTIVATION_MEANING = {"gelu": "gelu_erf", "gelu_erf": "gelu_erf", "gelu_exact": "gelu_erf",
                       "gelu_tanh": "gelu_new", "gelu_new": "gelu_new", "relu": "relu", "tanh": "tanh",
                       "swish": "swish", "linear": "linear"}

_POOLER = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")
MLM_TENSORS = ("cls/predictions/transform/dense/kernel", "cls/predictions/transform/dense/bias",
               "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/LayerNorm/beta",
               "cls/predictions/output_bias")


def rotate(x: np.ndarray) -> np.ndarray:
    """[B, A, T, d] rotated pair by pair by the angle ``t * base^(-2i/d)`` of its position ``t``."""
    seq_len, head_size = x.shape[-2], x.shape[-1]
    theta = ROTARY_BASE ** (-2.0 * np.arange(head_size // 2, dtype=np.float64) / head_size)
    phase = np.exp(1j * np.arange(seq_len, dtype=np.float64)[:, None] * theta[None, :])  # [T, d/2]
    pairs = (x[..., 0::2] + 1j * x[..., 1::2]) * phase
    turned = np.empty_like(x)
    turned[..., 0::2] = pairs.real
    turned[..., 1::2] = pairs.imag
    return turned


def _layer(x, get, scope: str, mask_adder, *, num_heads: int, inter: int, act, eps: float) -> np.ndarray:
    batch, seq_len, hidden = x.shape
    head_size = hidden // num_heads

    def split_heads(t: np.ndarray) -> np.ndarray:
        return t.reshape(batch, seq_len, num_heads, head_size).transpose(0, 2, 1, 3)  # [B, A, T, d]

    query = rotate(split_heads(_dense(x, get, f"{scope}/attention/self/query", hidden, hidden)))
    key = rotate(split_heads(_dense(x, get, f"{scope}/attention/self/key", hidden, hidden)))
    value = split_heads(_dense(x, get, f"{scope}/attention/self/value", hidden, hidden))
    scores = query @ key.transpose(0, 1, 3, 2) / np.sqrt(head_size) + mask_adder
    context = (_softmax(scores) @ value).transpose(0, 2, 1, 3).reshape(batch, seq_len, hidden)
    attention = _layer_norm(_dense(context, get, f"{scope}/attention/output/dense", hidden, hidden) + x,
                            get, f"{scope}/attention/output/LayerNorm", eps)
    intermediate = act(_dense(attention, get, f"{scope}/intermediate/dense", hidden, inter))
    return _layer_norm(_dense(intermediate, get, f"{scope}/output/dense", inter, hidden) + attention,
                       get, f"{scope}/output/LayerNorm", eps)


def roformer_reference_forward(weights: Any, config: BertConfig, inputs: MappingABC, *,
                               heads: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Every named output (``bertconv.outputs``) of the original RoFormer v1 in float64.
    ``heads``: ``mlm`` or none; by default the MLM head when its tensors are present."""
    if config.extra.get("use_relative_position") or "max_relative_position" in config.extra:
        raise InputError("the config describes NEZHA (relative positions), which RoFormer's reference does "
                         "not compute", hint="bertconv does not convert NEZHA")
    get = _Weights(weights)
    meaning = _ACTIVATION_MEANING.get(config.hidden_act)
    if meaning is None:
        raise InputError(f"hidden_act {config.hidden_act!r} is not supported by the RoFormer reference",
                         hint=f"known: {', '.join(_ACTIVATION_MEANING)}")
    act = ACTIVATIONS[meaning]
    hidden, inter, num_heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    if (hidden // num_heads) % 2:
        raise InputError(f"head size {hidden // num_heads} is odd: rotary position embeddings turn pairs")
    input_ids, token_type_ids, attention_mask = _check_inputs(inputs, config)
    batch, seq_len = input_ids.shape

    wanted = [h for h in (heads if heads is not None else ["mlm"]) if h]
    unknown = [h for h in wanted if h != "mlm"]
    if unknown:
        raise InputError(f"the RoFormer reference has no head {unknown[0]!r}", hint="choose mlm")
    if heads is None and not all(get.has(n) for n in MLM_TENSORS):
        wanted = []
    for name in MLM_TENSORS if wanted else ():
        if not get.has(name):
            raise InputError("head 'mlm' was asked for but its tensor is missing", tensor=name)

    results: dict[str, np.ndarray] = {}
    word = _check_shape(get.stored("bert/embeddings/word_embeddings"), (config.vocab_size, hidden),
                        "bert/embeddings/word_embeddings")
    x = word[input_ids].astype(np.float64)
    del word
    get.release("bert/embeddings/word_embeddings")
    segment = _check_shape(get("bert/embeddings/token_type_embeddings"), (config.type_vocab_size, hidden),
                           "bert/embeddings/token_type_embeddings")
    x = _layer_norm(x + segment[token_type_ids], get, "bert/embeddings/LayerNorm", config.layer_norm_eps)
    results[out.EMBEDDINGS] = x

    # bert4keras masks padded keys with -inf; -10000 gives the same softmax wherever a row has a
    # real key, and its first position is never masked
    mask_adder = mask_adder_of(attention_mask)
    for i in range(config.num_hidden_layers):
        x = _layer(x, get, f"bert/encoder/layer_{i}", mask_adder, num_heads=num_heads, inter=inter, act=act,
                   eps=config.layer_norm_eps)
        results[out.layer(i)] = x
    results[out.SEQUENCE] = x

    if all(get.has(n) for n in _POOLER):
        results[out.POOLED] = np.tanh(_dense(x[:, 0, :], get, "bert/pooler/dense", hidden, hidden))
    if wanted:
        transform = act(_dense(x, get, "cls/predictions/transform/dense", hidden, hidden))
        transform = _layer_norm(transform, get, "cls/predictions/transform/LayerNorm", MLM_LAYER_NORM_EPS)
        bias = _check_shape(get("cls/predictions/output_bias"), (config.vocab_size,), "cls/predictions/output_bias")
        word = get.stored("bert/embeddings/word_embeddings")  # the decoder is the embedding table itself
        results[out.MLM_LOGITS] = _decode(transform.reshape(-1, hidden), word, bias).reshape(
            batch, seq_len, config.vocab_size)
        del word
        get.release("bert/embeddings/word_embeddings")
    return results
