"""The original model's forward pass computed by TensorFlow itself, for ``validate --reference tf``.

Imported only when asked for: TensorFlow is optional. The computation follows google-research/bert's
modeling.py op for op (``tf.gather`` word lookup, one-hot token types, ``tf.nn.moments`` +
``tf.nn.batch_normalization`` as ``tf.contrib.layers.layer_norm`` does, the tanh GELU, the additive
``-10000`` mask), run eagerly in float64 so that it judges a float32 conversion rather than adding
its own float32 rounding to the comparison.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable

import numpy as np

from ... import outputs as out
from ...config import BertConfig
from ...errors import InputError

#: the heads' variable names: (weights, bias), multiplied transposed (already [out, in])
_HEAD_WEIGHTS = {
    "nsp": ("cls/seq_relationship/output_weights", "cls/seq_relationship/output_bias"),
    "classifier": ("output_weights", "output_bias"),
    "squad": ("cls/squad/output_weights", "cls/squad/output_bias"),
}
_MLM = ("cls/predictions/transform/dense/kernel", "cls/predictions/output_bias")


def _import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise InputError("--reference tf needs TensorFlow, which is not installed",
                         hint="pip install tensorflow-cpu, or use --reference numpy") from None
    return tf


def tf_reference_forward(read: Callable[[str], np.ndarray], has: Callable[[str], bool], config: BertConfig,
                         inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every named output, as float64 arrays, computed with TensorFlow ops."""
    tf = _import_tensorflow()
    dtype = tf.float64

    def var(name: str):
        return tf.constant(np.asarray(read(name), dtype=np.float64))

    def dense(x, scope: str, act=None):
        y = tf.nn.bias_add(tf.matmul(x, var(f"{scope}/kernel")), var(f"{scope}/bias"))
        return act(y) if act is not None else y

    def layer_norm(x, scope: str):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return tf.nn.batch_normalization(x, mean, variance, offset=var(f"{scope}/beta"),
                                         scale=var(f"{scope}/gamma"), variance_epsilon=config.layer_norm_eps)

    def gelu(x):
        return x * 0.5 * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))

    acts: dict[str, Any] = {"gelu": gelu, "gelu_new": gelu, "gelu_pytorch_tanh": gelu, "relu": tf.nn.relu,
                            "tanh": tf.tanh, "linear": None}
    if config.hidden_act not in acts:
        raise InputError(f"hidden_act {config.hidden_act!r} is not supported by the TensorFlow reference")
    act = acts[config.hidden_act]
    input_ids = tf.constant(np.asarray(inputs["input_ids"], dtype=np.int32))
    token_type_ids = tf.constant(np.asarray(inputs["token_type_ids"], dtype=np.int32))
    mask = tf.constant(np.asarray(inputs["attention_mask"], dtype=np.float64))
    batch, seq_len = (int(d) for d in input_ids.shape)
    hidden, num_heads, head_size = config.hidden_size, config.num_attention_heads, config.head_size
    results = {}

    word = var("bert/embeddings/word_embeddings")
    x = tf.gather(word, input_ids)
    one_hot = tf.one_hot(tf.reshape(token_type_ids, [-1]), depth=config.type_vocab_size, dtype=dtype)
    x += tf.reshape(tf.matmul(one_hot, var("bert/embeddings/token_type_embeddings")), [batch, seq_len, hidden])
    x += tf.expand_dims(var("bert/embeddings/position_embeddings")[:seq_len], 0)
    x = layer_norm(x, "bert/embeddings/LayerNorm")
    results[out.EMBEDDINGS] = x

    adder = (1.0 - tf.reshape(mask, [batch, 1, 1, seq_len])) * -10000.0
    h = tf.reshape(x, [-1, hidden])  # [B*T, H]
    for i in range(config.num_hidden_layers):
        scope = f"bert/encoder/layer_{i}"

        def heads_first(t):
            return tf.transpose(tf.reshape(t, [batch, seq_len, num_heads, head_size]), [0, 2, 1, 3])

        q = heads_first(dense(h, f"{scope}/attention/self/query"))
        k = heads_first(dense(h, f"{scope}/attention/self/key"))
        v = heads_first(dense(h, f"{scope}/attention/self/value"))
        probs = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(head_size)) + adder)
        context = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [-1, hidden])
        attention = layer_norm(dense(context, f"{scope}/attention/output/dense") + h,
                               f"{scope}/attention/output/LayerNorm")
        intermediate = dense(attention, f"{scope}/intermediate/dense", act)
        h = layer_norm(dense(intermediate, f"{scope}/output/dense") + attention, f"{scope}/output/LayerNorm")
        results[out.layer(i)] = tf.reshape(h, [batch, seq_len, hidden])
    sequence = tf.reshape(h, [batch, seq_len, hidden])
    results[out.SEQUENCE] = sequence

    pooled = None
    if has("bert/pooler/dense/kernel"):
        pooled = dense(sequence[:, 0, :], "bert/pooler/dense", tf.tanh)
        results[out.POOLED] = pooled
    if all(has(n) for n in _MLM):
        transform = layer_norm(dense(h, "cls/predictions/transform/dense", act), "cls/predictions/transform/LayerNorm")
        logits = tf.nn.bias_add(tf.matmul(transform, word, transpose_b=True), var("cls/predictions/output_bias"))
        results[out.MLM_LOGITS] = tf.reshape(logits, [batch, seq_len, config.vocab_size])
    for head, (weights, bias) in _HEAD_WEIGHTS.items():
        if not has(weights):
            continue
        if head == "squad":
            logits = tf.nn.bias_add(tf.matmul(h, var(weights), transpose_b=True), var(bias))
            results[out.SPAN_LOGITS] = tf.reshape(logits, [batch, seq_len, 2])
        elif pooled is not None:
            results[out.HEAD_OUTPUTS[head]] = tf.nn.bias_add(tf.matmul(pooled, var(weights), transpose_b=True),
                                                             var(bias))
    return {name: np.asarray(value.numpy(), dtype=np.float64) for name, value in results.items()}
