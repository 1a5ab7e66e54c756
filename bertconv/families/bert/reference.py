"""An independent float64 forward pass of google-research/bert's model, written over the original
TensorFlow variable names.

It shares no code with the PyTorch model or the name-mapping tables on purpose: it is the second
opinion that ``validate`` holds a converted model against. It follows modeling.py,
run_pretraining.py, run_classifier.py and run_squad.py step by step (inference mode, so dropout
is the identity):

- embeddings: word lookup + token-type lookup + the first ``seq_len`` position rows, then LayerNorm;
- attention scores scaled by ``1/sqrt(head_size)``, plus ``(1 - mask) * -10000.0`` before softmax;
- LayerNorm over the last axis with epsilon 1e-12 (``gamma * x_hat + beta``);
- GELU is the tanh approximation although the config says ``"gelu"``;
- pooler ``tanh(dense(first token))``; MLM ``LayerNorm(act(dense(h))) @ word_embeddings^T + bias``;
  NSP, classifier and SQuAD heads multiply by their ``output_weights`` transposed (already
  ``[out, in]``).

Weights are read one tensor at a time and converted to float64 when used, and each tensor read from
a memory-mapped checkpoint is released once its float64 copy exists (``release``: its mapped pages
leave the process), so that a BERT-Large fits in little more memory than its largest tensor and
the activations, however much of the checkpoint's file it has read.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from ... import outputs as out
from ...config import BertConfig
from ...errors import InputError
from . import HEAD_TENSORS

#: modeling.py's additive attention mask value for padded keys.
ATTENTION_MASK_ADDER = -10000.0

_POOLER = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")
_HEADS_NEEDING_POOLER = ("nsp", "classifier")

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    # modeling.py's gelu(): the tanh approximation, whatever the config calls it,
    #   0.5 * x * (1 + tanh(z)),  z = sqrt(2/pi) * (x + 0.044715 x^3),
    # evaluated as its exact equal x / (1 + exp(-2z)): NumPy's float64 exp is vectorised and its
    # tanh is not (half the time on [B, T, intermediate]), and the sum 1 + tanh(z) no longer
    # cancels to 0 for very negative x. In place on one temporary.
    inner = x * x
    inner *= 0.044715 * x
    inner += x
    inner *= -2.0 * _SQRT_2_OVER_PI
    with np.errstate(over="ignore"):  # exp overflows to inf for x << 0, where GELU is -0.0
        np.exp(inner, out=inner)
    inner += 1.0
    np.divide(x, inner, out=inner)
    return inner


# NumPy has no erf and SciPy is not a dependency; libm's erf through frompyfunc is exact and is
# only used by configs that ask for the exact GELU.
_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu_erf(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gelu": _gelu_tanh,               # what google-research/bert computes for "gelu"
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_exact": _gelu_erf,
    "gelu_erf": _gelu_erf,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "linear": lambda x: x,
    "swish": lambda x: x / (1.0 + np.exp(-x)),
}


class _Weights:
    """Uniform, lazy access to a mapping, a TensorSource-like object or a callable."""

    def __init__(self, weights: Any):
        self._weights = weights

    def has(self, name: str) -> bool:
        w = self._weights
        if isinstance(w, MappingABC) or hasattr(w, "__contains__"):
            return name in w
        # A bare callable can only be probed; readers signal a missing name in their own ways
        # (KeyError, our InputError, TensorFlow's NotFoundError), so any failure means absent.
        try:
            w(name)
        except Exception:  # noqa: BLE001
            return False
        return True

    def __call__(self, name: str) -> np.ndarray:
        widened = self.stored(name).astype(np.float64)
        self.release(name)  # the float64 copy is all that is used from here on
        return widened

    def release(self, name: str) -> None:
        """Tell a memory-mapped source that ``name`` is done with (a hint; arrays already read
        stay valid, their pages read back from the file on access)."""
        release = getattr(self._weights, "release", None)
        if callable(release):
            release(name)

    def stored(self, name: str) -> np.ndarray:
        """The tensor in its stored dtype: for callers that convert only the part they use."""
        w = self._weights
        if isinstance(w, MappingABC):
            if name not in w:
                raise InputError("the reference forward pass needs this tensor, which is missing",
                                 tensor=name)
            value = w[name]
        elif hasattr(w, "read"):
            value = w.read(name)
        else:
            try:
                value = w(name)
            except (KeyError, LookupError):
                raise InputError("the reference forward pass needs this tensor, which is missing",
                                 tensor=name) from None
        return np.asarray(value)


def _check_shape(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    if array.shape != shape:
        raise InputError(f"shape {list(array.shape)} does not fit the config, which implies {list(shape)}",
                         tensor=name, hint="check bert_config.json against the checkpoint")
    return array


def _layer_norm(x: np.ndarray, get: _Weights, scope: str, eps: float) -> np.ndarray:
    gamma = get(f"{scope}/gamma")
    beta = get(f"{scope}/beta")
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    variance = np.mean(centered * centered, axis=-1, keepdims=True)
    return centered / np.sqrt(variance + eps) * gamma + beta


def _dense(x: np.ndarray, get: _Weights, scope: str, n_in: int, n_out: int) -> np.ndarray:
    kernel = _check_shape(get(f"{scope}/kernel"), (n_in, n_out), f"{scope}/kernel")  # [in, out]
    bias = _check_shape(get(f"{scope}/bias"), (n_out,), f"{scope}/bias")
    # one 2-D BLAS call rather than a stacked matmul: measurably faster on [B, T, H] inputs
    y = x.reshape(-1, n_in) @ kernel
    y += bias
    return y.reshape(*x.shape[:-1], n_out)


def _output_weights(x: np.ndarray, get: _Weights, scope: str, n_in: int,
                    n_out: int | None = None) -> np.ndarray:
    prefix = f"{scope}/" if scope else ""
    weights = get(prefix + "output_weights")  # [out, in]: multiplied transposed
    if weights.ndim != 2 or weights.shape[1] != n_in or (n_out is not None and weights.shape[0] != n_out):
        want = [n_out if n_out is not None else "n", n_in]
        raise InputError(f"shape {list(weights.shape)} is not {want}", tensor=prefix + "output_weights")
    bias = _check_shape(get(prefix + "output_bias"), (weights.shape[0],), prefix + "output_bias")
    return x @ weights.T + bias


#: vocabulary rows converted to float64 at a time by the MLM decoder (6 MB at H = 768)
_DECODER_ROWS = 1024


def _decode(x: np.ndarray, table: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``x @ table.T + bias`` in float64 with ``table`` in its stored dtype: a block of rows at a
    time through one reused buffer, rather than a float64 copy of the whole [vocab, H] table
    (~190 MB for BERT-Base, freshly allocated and so paid for again in page faults)."""
    logits = np.empty((x.shape[0], table.shape[0]), dtype=np.float64)
    block = np.empty((min(_DECODER_ROWS, table.shape[0]), table.shape[1]), dtype=np.float64)
    for start in range(0, table.shape[0], _DECODER_ROWS):
        rows = table[start:start + _DECODER_ROWS]
        np.copyto(block[:len(rows)], rows)
        np.matmul(x, block[:len(rows)].T, out=logits[:, start:start + len(rows)])
    logits += bias
    return logits


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


def _check_inputs(inputs: MappingABC, config: BertConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        input_ids = np.asarray(inputs["input_ids"])
    except KeyError:
        raise InputError("inputs need 'input_ids'") from None
    if input_ids.ndim != 2 or input_ids.shape[1] == 0:
        raise InputError(f"input_ids must be [batch, seq_len], got shape {list(input_ids.shape)}")
    token_type_ids = np.asarray(inputs.get("token_type_ids", np.zeros_like(input_ids)))
    attention_mask = np.asarray(inputs.get("attention_mask", np.ones_like(input_ids)))
    for name, array, upper in (("input_ids", input_ids, config.vocab_size),
                               ("token_type_ids", token_type_ids, config.type_vocab_size),
                               ("attention_mask", attention_mask, 2)):
        if array.shape != input_ids.shape:
            raise InputError(f"{name} has shape {list(array.shape)}, input_ids {list(input_ids.shape)}")
        if not np.issubdtype(array.dtype, np.integer):
            raise InputError(f"{name} must hold integers, got {array.dtype}")
        if array.size and (array.min() < 0 or array.max() >= upper):
            raise InputError(f"{name} holds values outside [0, {upper})")
    if input_ids.shape[1] > config.max_position_embeddings:
        raise InputError(f"seq_len {input_ids.shape[1]} exceeds max_position_embeddings "
                         f"{config.max_position_embeddings}")
    return input_ids, token_type_ids, attention_mask


#: Where one transformer layer's tensors live, relative to its scope: google-research/bert's
#: names; ALBERT's shared block names the same tensors differently.
BERT_LAYER_NAMES = ("attention/self/query", "attention/self/key", "attention/self/value",
                    "attention/output/dense", "attention/output/LayerNorm",
                    "intermediate/dense", "output/dense", "output/LayerNorm")


def mask_adder_of(attention_mask: np.ndarray) -> np.ndarray:
    """[B, 1, 1, T_key]: the same adder for every head and every query position."""
    return ((1.0 - attention_mask.astype(np.float64)) * ATTENTION_MASK_ADDER)[:, None, None, :]


def transformer_layer(x: np.ndarray, get, scope: str, names, mask_adder: np.ndarray, *,
                      num_heads: int, inter: int, act, eps: float) -> np.ndarray:
    """One post-LayerNorm transformer layer of modeling.py's ``transformer_model``, in float64.
    ``names`` lists the eight sub-scopes in the order of ``BERT_LAYER_NAMES``."""
    q, k, v, attn_out, attn_ln, ffn_in, ffn_out, out_ln = (f"{scope}/{n}" for n in names)
    batch, seq_len, hidden = x.shape
    head_size = hidden // num_heads

    def split_heads(t: np.ndarray) -> np.ndarray:
        return t.reshape(batch, seq_len, num_heads, head_size).transpose(0, 2, 1, 3)  # [B, A, T, d]

    query = split_heads(_dense(x, get, q, hidden, hidden))
    key = split_heads(_dense(x, get, k, hidden, hidden))
    value = split_heads(_dense(x, get, v, hidden, hidden))
    scores = query @ key.transpose(0, 1, 3, 2) * (1.0 / math.sqrt(head_size)) + mask_adder  # [B, A, T, T]
    context = (_softmax(scores) @ value).transpose(0, 2, 1, 3).reshape(batch, seq_len, hidden)
    attention = _layer_norm(_dense(context, get, attn_out, hidden, hidden) + x, get, attn_ln, eps)
    intermediate = act(_dense(attention, get, ffn_in, hidden, inter))
    return _layer_norm(_dense(intermediate, get, ffn_out, inter, hidden) + attention, get, out_ln, eps)


def _select_heads(get: _Weights, heads: Iterable[str] | None, has_pooler: bool) -> list[str]:
    if heads is None:
        chosen = [h for h, names in HEAD_TENSORS.items() if all(get.has(n) for n in names)]
    else:
        chosen = list(heads)
    for head in chosen:
        if head not in HEAD_TENSORS:
            raise InputError(f"the BERT reference has no head {head!r}",
                             hint=f"choose from {', '.join(HEAD_TENSORS)}")
        for name in HEAD_TENSORS[head]:
            if not get.has(name):
                raise InputError(f"head {head!r} was asked for but its tensor is missing", tensor=name)
        if head in _HEADS_NEEDING_POOLER and not has_pooler:
            raise InputError(f"head {head!r} needs the pooler, which is missing", tensor=_POOLER[0])
    return chosen


def reference_forward(weights: Any, config: BertConfig, inputs: MappingABC, *,
                      heads: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Run the original model in float64 and return every named output (see ``bertconv.outputs``).

    ``weights``: a mapping from TF variable name to array, an object with ``read(name)`` and
    ``__contains__`` (a TensorSource), or a callable ``name -> array``.
    ``heads``: which of ``mlm``, ``nsp``, ``classifier``, ``squad`` to compute; by default every
    head whose tensors are present.
    """
    get = _Weights(weights)
    act_name = config.hidden_act
    if act_name not in ACTIVATIONS:
        raise InputError(f"hidden_act {act_name!r} is not supported by the reference",
                         hint=f"known: {', '.join(ACTIVATIONS)}")
    act = ACTIVATIONS[act_name]
    eps = config.layer_norm_eps
    hidden, inter = config.hidden_size, config.intermediate_size
    num_heads = config.num_attention_heads
    input_ids, token_type_ids, attention_mask = _check_inputs(inputs, config)
    batch, seq_len = input_ids.shape

    has_pooler = all(get.has(n) for n in _POOLER)
    chosen = _select_heads(get, heads, has_pooler)
    results: dict[str, np.ndarray] = {}

    # -- embeddings
    # only the rows looked up are converted, not the whole [vocab, H] table
    word = _check_shape(get.stored("bert/embeddings/word_embeddings"), (config.vocab_size, hidden),
                        "bert/embeddings/word_embeddings")
    x = word[input_ids].astype(np.float64)  # [B, T, H]
    del word
    get.release("bert/embeddings/word_embeddings")
    token_type = _check_shape(get("bert/embeddings/token_type_embeddings"),
                              (config.type_vocab_size, hidden), "bert/embeddings/token_type_embeddings")
    x += token_type[token_type_ids]
    position = _check_shape(get("bert/embeddings/position_embeddings"),
                            (config.max_position_embeddings, hidden), "bert/embeddings/position_embeddings")
    x += position[:seq_len][None, :, :]
    x = _layer_norm(x, get, "bert/embeddings/LayerNorm", eps)
    results[out.EMBEDDINGS] = x

    mask_adder = mask_adder_of(attention_mask)

    # -- encoder, one layer at a time
    for i in range(config.num_hidden_layers):
        x = transformer_layer(x, get, f"bert/encoder/layer_{i}", BERT_LAYER_NAMES, mask_adder,
                              num_heads=num_heads, inter=inter, act=act, eps=eps)
        results[out.layer(i)] = x
    results[out.SEQUENCE] = x

    pooled = None
    if has_pooler:
        pooled = np.tanh(_dense(x[:, 0, :], get, "bert/pooler/dense", hidden, hidden))
        results[out.POOLED] = pooled

    # -- heads
    if "mlm" in chosen:
        transform = act(_dense(x, get, "cls/predictions/transform/dense", hidden, hidden))
        transform = _layer_norm(transform, get, "cls/predictions/transform/LayerNorm", eps)
        word = get.stored("bert/embeddings/word_embeddings")  # the decoder is the embedding table itself
        bias = _check_shape(get("cls/predictions/output_bias"), (config.vocab_size,),
                            "cls/predictions/output_bias")
        results[out.MLM_LOGITS] = _decode(transform.reshape(-1, hidden), word, bias).reshape(
            batch, seq_len, config.vocab_size)
        del word
        get.release("bert/embeddings/word_embeddings")
    if "nsp" in chosen:
        results[out.NSP_LOGITS] = _output_weights(pooled, get, "cls/seq_relationship", hidden, 2)
    if "classifier" in chosen:
        results[out.CLASSIFIER_LOGITS] = _output_weights(pooled, get, "", hidden)
    if "squad" in chosen:
        results[out.SPAN_LOGITS] = _output_weights(x, get, "cls/squad", hidden, 2)  # [B, T, 2]
    return results
