"""An independent float64 forward pass of RoFormer-v2 as bert4keras 0.11's ``RoFormerV2``
computes it, over the canonical (Google-layout) names.

It shares no code with the PyTorch model or the mapping tables; it takes BERT's generic pieces
(softmax, input and shape checks, lazy weight access) and RoFormer v1's reference rotation
(complex multiplication). Inference mode, so dropout is the identity:

- embeddings: token lookup + segment lookup, then the norm ``x / sqrt(mean(x^2) + 1e-7)``;
- each layer: query, key, value kernels (no biases); queries and keys rotated by position; scores
  scaled by ``1/sqrt(head_size)``; masked keys at -1e12 (bert4keras' -inf); output kernel; add
  and norm; ReLU feed-forward of two kernels; add and norm;
- MLM: the last hidden states times the token embeddings transposed (``with_mlm='linear'``);
- classifier: ``h[:, 0] @ kernel + bias``.
"""
from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from ... import outputs as out
from ...config import BertConfig
from ...errors import InputError
from ..bert.reference import ACTIVATIONS, _check_shape, _softmax, _Weights
from ..roformer.reference import rotate

MASKED = -1e12
CLASSIFIER = ("classifier/kernel", "classifier/bias")


def _norm(x: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def _kernel(x: np.ndarray, get, name: str, n_in: int, n_out: int) -> np.ndarray:
    return x @ _check_shape(get(name), (n_in, n_out), name)


def roformer_v2_reference_forward(weights: Any, config: BertConfig, inputs: MappingABC, *,
                                  heads: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Every named output of the original RoFormer-v2 in float64. ``heads``: ``mlm`` (always
    computable: it has no weights) and ``classifier``; by default the MLM, and the classifier
    when its tensors are present."""
    get = _Weights(weights)
    meaning = {"gelu": "gelu_erf"}.get(config.hidden_act, config.hidden_act)
    if meaning not in ACTIVATIONS:
        raise InputError(f"hidden_act {config.hidden_act!r} is not supported by the RoFormer-v2 reference")
    act = ACTIVATIONS[meaning]
    eps = config.layer_norm_eps
    hidden, inter, num_heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    d = hidden // num_heads
    input_ids = np.asarray(inputs["input_ids"])
    token_type_ids = np.asarray(inputs.get("token_type_ids", np.zeros_like(input_ids)))
    attention_mask = np.asarray(inputs.get("attention_mask", np.ones_like(input_ids)))
    batch, seq_len = input_ids.shape
    has_classifier = all(get.has(n) for n in CLASSIFIER)
    wanted = list(heads) if heads is not None else ["mlm"] + (["classifier"] if has_classifier else [])
    for head in wanted:
        if head not in ("mlm", "classifier"):
            raise InputError(f"the RoFormer-v2 reference has no head {head!r}", hint="choose mlm or classifier")
        if head == "classifier" and not has_classifier:
            raise InputError("head 'classifier' was asked for but its tensor is missing", tensor=CLASSIFIER[0])

    word = _check_shape(get("bert/embeddings/word_embeddings"), (config.vocab_size, hidden),
                        "bert/embeddings/word_embeddings")
    segment = _check_shape(get("bert/embeddings/token_type_embeddings"), (config.type_vocab_size, hidden),
                           "bert/embeddings/token_type_embeddings")
    x = _norm(word[input_ids] + segment[token_type_ids], eps)
    results = {out.EMBEDDINGS: x}
    adder = ((1.0 - attention_mask.astype(np.float64)) * MASKED)[:, None, None, :]

    def split(t):
        return t.reshape(batch, seq_len, num_heads, d).transpose(0, 2, 1, 3)

    for i in range(config.num_hidden_layers):
        scope = f"bert/encoder/layer_{i}"
        q = rotate(split(_kernel(x, get, f"{scope}/attention/self/query/kernel", hidden, hidden)))
        k = rotate(split(_kernel(x, get, f"{scope}/attention/self/key/kernel", hidden, hidden)))
        v = split(_kernel(x, get, f"{scope}/attention/self/value/kernel", hidden, hidden))
        probs = _softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + adder)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq_len, hidden)
        x = _norm(x + _kernel(context, get, f"{scope}/attention/output/dense/kernel", hidden, hidden), eps)
        ffn = _kernel(act(_kernel(x, get, f"{scope}/intermediate/dense/kernel", hidden, inter)), get,
                      f"{scope}/output/dense/kernel", inter, hidden)
        x = _norm(x + ffn, eps)
        results[out.layer(i)] = x
    results[out.SEQUENCE] = x
    if "mlm" in wanted:
        results[out.MLM_LOGITS] = x @ word.T
    if "classifier" in wanted:
        kernel = get(CLASSIFIER[0])
        results[out.CLASSIFIER_LOGITS] = x[:, 0] @ kernel + _check_shape(get(CLASSIFIER[1]), (kernel.shape[1],),
                                                                         CLASSIFIER[1])
    return results
