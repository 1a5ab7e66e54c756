"""An independent float64 forward pass of CANINE as google-research/language's
``language/canine/modeling.py`` computes it (inference: dropout is the identity), over the
original TensorFlow names.

It shares no code with the PyTorch model or the mapping tables; from BERT's reference it takes the
generic pieces (dense, LayerNorm, softmax, lazy weight access). It reaches
the same numbers by other routes where the model has a choice:

- the hash embeddings gathered one hash function at a time from the codepoints, as
  ``_embed_hash_buckets`` does;
- the local attention of the initial character encoder as full attention whose keys outside the
  query's window get ``-inf`` (exactly zero weight), the padded keys ``-10000`` as
  ``bert_modeling.attention_layer`` adds them: a window of padding only still weighs its keys by
  their scores, and those scores are rounded as the original's float32 sum rounds them (to about a
  thousandth, which decides such a window's weights);
- both convolutions tap by tap over the stored ``[width, in, out]`` kernels (TensorFlow's
  ``valid`` and ``same`` paddings written out);
- the molecules' mask by ``tf.nn.max_pool2d``'s arithmetic (the max over character blocks), and
  the repeated molecules by index: character ``p`` reads molecule ``min(1 + p // rate, M - 1)``.
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
    _dense,
    _layer_norm,
    _output_weights,
    _softmax,
    _Weights,
    mask_adder_of,
)

#: modeling.py's _PRIMES
PRIMES = (31, 43, 59, 61, 73, 97, 103, 113, 137, 149, 157, 173, 181, 193, 211, 223)
#: tydiqa/tydi_modeling.py's create_classification_model
HEAD_TENSORS = {"squad": ("cls/tydi/output_weights", "cls/tydi/output_bias", "answer_type_output_weights",
                          "answer_type_output_bias")}
ANSWER_TYPES = 5
SPAN_LOGITS, ANSWER_TYPE_LOGITS = out.SPAN_LOGITS, "answer_type_logits"
_POOLER = "pooler/dense"
_DOWN = "initial_char_encoder/initial_char_encoder/chars_to_molecules"


def _conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """tf.nn.conv1d over [B, T, C] with a [width, C, O] kernel, tap by tap."""
    width = kernel.shape[0]
    if padding == "same":
        before = (width - 1) // 2
        x = np.pad(x, ((0, 0), (before, width - 1 - before), (0, 0)))
    steps = (x.shape[1] - width) // stride + 1
    y = np.zeros((x.shape[0], max(steps, 0), kernel.shape[2]))
    for tap in range(width):
        y += x[:, tap:tap + stride * (steps - 1) + 1:stride] @ kernel[tap]
    return y + bias


def _layer(x: np.ndarray, get, scope: str, adder: np.ndarray, *, num_heads: int, inter: int, act, eps: float,
           outside: np.ndarray | None = None) -> np.ndarray:
    """One of bert_modeling.transformer_model's layers; ``adder`` [B, 1, 1, T] is 0 or -10000,
    ``outside`` [T, T] True for the keys a query does not see at all."""
    batch, length, hidden = x.shape
    d = hidden // num_heads

    def split(t):
        return t.reshape(batch, length, num_heads, d).transpose(0, 2, 1, 3)

    q = split(_dense(x, get, f"{scope}/attention/self/query", hidden, hidden))
    k = split(_dense(x, get, f"{scope}/attention/self/key", hidden, hidden))
    v = split(_dense(x, get, f"{scope}/attention/self/value", hidden, hidden))
    scores = np.einsum("bhid,bhjd->bhij", q, k) / np.sqrt(d)
    masked = (scores.astype(np.float32) + adder.astype(np.float32)).astype(np.float64)
    scores = np.where(adder != 0, masked, scores)
    if outside is not None:
        scores = np.where(outside, -np.inf, scores)
    context = np.einsum("bhij,bhjd->bhid", _softmax(scores), v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
    attention = _layer_norm(_dense(context, get, f"{scope}/attention/output/dense", hidden, hidden) + x,
                            get, f"{scope}/attention/output/LayerNorm", eps)
    inner = act(_dense(attention, get, f"{scope}/intermediate/dense", hidden, inter))
    return _layer_norm(_dense(inner, get, f"{scope}/output/dense", inter, hidden) + attention,
                       get, f"{scope}/output/LayerNorm", eps)


def _setting(config: BertConfig, name: str) -> int:
    try:
        return int(config.extra[name])
    except KeyError:
        raise InputError(f"the CANINE config lacks {name}", hint="use the canine_config.json released with it") from None


def canine_reference_forward(weights: Any, config: BertConfig, inputs: MappingABC, *,
                             heads: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Every named output of the original CANINE in float64. ``heads``: ``squad`` (TyDi QA's span
    and answer-type heads) or none; by default every head whose tensors are present."""
    get = _Weights(weights)
    if config.hidden_act not in ACTIVATIONS:
        raise InputError(f"hidden_act {config.hidden_act!r} is not supported by the CANINE reference",
                         hint=f"known: {', '.join(ACTIVATIONS)}")
    act = ACTIVATIONS[config.hidden_act]
    eps = config.layer_norm_eps
    hidden, inter, num_heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    rate, width = _setting(config, "downsampling_rate"), _setting(config, "local_transformer_stride")
    hashes, buckets = _setting(config, "num_hash_functions"), _setting(config, "num_hash_buckets")
    chosen = [h for h, names in HEAD_TENSORS.items() if all(get.has(n) for n in names)] \
        if heads is None else list(heads)
    for head in chosen:
        if head not in HEAD_TENSORS:
            raise InputError(f"the CANINE reference has no head {head!r}", hint=f"choose from {', '.join(HEAD_TENSORS)}")
        for name in HEAD_TENSORS[head]:
            if not get.has(name):
                raise InputError(f"head {head!r} was asked for but its tensor is missing", tensor=name)
    codepoints, segments, mask = _check_inputs(inputs, config)
    batch, length = codepoints.shape
    layer = dict(num_heads=num_heads, inter=inter, act=act, eps=eps)

    shards = []
    for k in range(hashes):
        name = f"char_embeddings/embeddings/HashBucketCodepointEmbedder_{k}"
        table = _check_shape(get(name), (buckets, hidden // hashes), name)
        shards.append(table[((codepoints + 1) * PRIMES[k]) % buckets])
    segment = _check_shape(get("char_embeddings/segment_embeddings"), (config.type_vocab_size, hidden),
                           "char_embeddings/segment_embeddings")
    positions = get("char_embeddings/char_position_embeddings")[:length]
    chars = _layer_norm(np.concatenate(shards, axis=-1) + segment[segments] + positions[None], get,
                        "char_embeddings/LayerNorm", eps)
    results = {out.EMBEDDINGS: chars}

    padded = mask_adder_of(mask)  # [B, 1, 1, T]
    window = np.arange(length) // width
    encoded = _layer(chars, get, "initial_char_encoder/layer_0", padded, **layer,
                     outside=window[:, None] != window[None, :])
    results["char_encoding"] = encoded

    down = _conv(encoded, get(f"{_DOWN}/conv/kernel"), get(f"{_DOWN}/conv/bias"), rate, "valid")
    x = _layer_norm(np.concatenate([encoded[:, :1], act(down)[:, :-1]], axis=1), get, f"{_DOWN}/LayerNorm", eps)
    results["initial_molecules"] = x
    molecules = x.shape[1]
    block_mask = mask[:, :molecules * rate].reshape(batch, molecules, rate).max(axis=-1)
    molecule_adder = mask_adder_of(block_mask)
    for i in range(config.num_hidden_layers):
        x = _layer(x, get, f"bert/layer_{i}", molecule_adder, **layer)
        results[out.layer(i)] = x

    which = np.minimum(1 + np.arange(length) // rate, molecules - 1)
    up = _conv(np.concatenate([encoded, x[:, which]], axis=-1), get("final_char_encoder/conv/kernel"),
               get("final_char_encoder/conv/bias"), 1, "same")
    upsampled = _layer_norm(act(up), get, "final_char_encoder/LayerNorm", eps)
    sequence = _layer(upsampled, get, "final_char_encoder/layer_0", padded, **layer)
    results[out.SEQUENCE] = sequence

    pooled = None
    if get.has(f"{_POOLER}/kernel"):
        pooled = np.tanh(_dense(x[:, 0], get, _POOLER, hidden, hidden))
        results[out.POOLED] = pooled
    if "squad" in chosen:
        if pooled is None:
            raise InputError("the answer-type head needs the pooler, which is missing", tensor=f"{_POOLER}/kernel")
        results[SPAN_LOGITS] = _output_weights(sequence, get, "cls/tydi", hidden, 2)
        weights_ = get("answer_type_output_weights")
        _check_shape(weights_, (ANSWER_TYPES, hidden), "answer_type_output_weights")
        results[ANSWER_TYPE_LOGITS] = pooled @ weights_.T + get("answer_type_output_bias")
    return results
