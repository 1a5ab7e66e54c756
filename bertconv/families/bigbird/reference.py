"""The original BigBird's forward pass in float64 NumPy over google-research/bigbird's own names:
the embeddings' LayerNorm under ``bert/encoder``, the padding mask from ``input_ids > 0`` as
``BertModel.call`` makes it, BERT's post-norm layers, the pooler's tanh, the MLM transform at the
top level decoded by the word table, and the NSP layer.

Attention is full (``original_full``: what bigbird/core computes up to 512 tokens) or block-sparse.
Block-sparse is written here apart from the model's blocked products (block_sparse.py): the input
is padded with id 0 to ``max_encoder_length`` (raised to whole blocks), each query block gathers
the keys of the blocks it attends, random blocks included (:func:`random_blocks`, drawn with
NumPy's own ``RandomState``), and a padded query's context is zero.
"""
from __future__ import annotations

import math

import numpy as np

from ... import outputs as out
from ...errors import InputError
from ..bert.reference import (ACTIVATIONS, BERT_LAYER_NAMES, _check_inputs, _check_shape, _decode, _dense,
                              _layer_norm, _output_weights, _softmax, _Weights, mask_adder_of, transformer_layer)
from . import HEAD_TENSORS

#: attention.py's MAX_SEQ_LEN, the lengths whose random blocks are cut from a plan that long, and
#: the tokens among whose blocks that plan draws
PLAN_LENGTH, CUT_LENGTHS, CUT_REACH = 4096, (1024, 2048, 3072, 4096), 1024

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

    if config.extra.get("attention_type") == "block_sparse":
        x = _block_sparse_layers(x, input_ids, token_type_ids, get, config, act, results)
    else:
        mask_adder = mask_adder_of((input_ids > 0).astype(np.int64))  # the original's padding rule
        for i in range(config.num_hidden_layers):
            x = transformer_layer(x, get, f"bert/encoder/layer_{i}", BERT_LAYER_NAMES, mask_adder,
                                  num_heads=config.num_attention_heads, inter=config.intermediate_size, act=act,
                                  eps=eps)
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


def _block_sparse_layers(x, input_ids, token_type_ids, get, config, act, results):
    """The layers at the original's length: the embeddings are rebuilt for the input padded with
    id 0 (position rows included), the outputs cut back to the input's length."""
    length, block = config.extra["max_encoder_length"], config.extra["block_size"]
    run_length = -(-length // block) * block
    seq_len = input_ids.shape[1]
    if seq_len > length:
        raise InputError(f"the input is {seq_len} tokens long; this BigBird runs at max_encoder_length {length}")
    pad = ((0, 0), (0, run_length - seq_len))
    ids, types = np.pad(input_ids, pad), np.pad(token_type_ids, pad)
    hidden, eps = config.hidden_size, config.layer_norm_eps
    h = get.stored("bert/embeddings/word_embeddings")[ids].astype(np.float64)
    h += get("bert/embeddings/token_type_embeddings")[types]
    h += _check_shape(get("bert/embeddings/position_embeddings"), (config.max_position_embeddings, hidden),
                      "bert/embeddings/position_embeddings")[:run_length][None]
    h = _layer_norm(h, get, "bert/encoder/LayerNorm", eps)
    mask = (ids > 0).astype(np.float64)
    for i in range(config.num_hidden_layers):
        plan = random_blocks(run_length, block, config.extra["num_random_blocks"], config.num_attention_heads, i)
        h = _sparse_layer(h, get, f"bert/encoder/layer_{i}", mask, plan, block, config, act)
        results[out.layer(i)] = h[:, :seq_len]
    return h[:, :seq_len]


def _sparse_layer(x, get, scope, mask, plan, block, config, act):
    q, k, v, attn_out, attn_ln, ffn_in, ffn_out, out_ln = (f"{scope}/{n}" for n in BERT_LAYER_NAMES)
    batch, length, hidden = x.shape
    heads, eps, inter = config.num_attention_heads, config.layer_norm_eps, config.intermediate_size
    size = hidden // heads

    def split(t):
        return t.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

    query, key, value = (split(_dense(x, get, n, hidden, hidden)) for n in (q, k, v))
    context = np.zeros_like(query)
    n = length // block
    for head in range(heads):
        for i in range(n):
            if i in (0, n - 1):  # the global blocks attend every key
                keys = np.arange(length)
            else:
                near = [0, 1, 2, n - 1] if i == 1 else [0, n - 3, n - 2, n - 1] if i == n - 2 else \
                    [0, i - 1, i, i + 1, n - 1]
                keys = np.concatenate([np.arange(b * block, (b + 1) * block) for b in near + list(plan[head, i - 1])])
            rows = slice(i * block, (i + 1) * block)
            scores = query[:, head, rows] @ key[:, head, keys].transpose(0, 2, 1) / math.sqrt(size)
            scores = scores + (1.0 - mask[:, None, keys]) * -10000.0
            context[:, head, rows] = _softmax(scores) @ value[:, head, keys]
    context = (context * mask[:, None, :, None]).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
    attention = _layer_norm(_dense(context, get, attn_out, hidden, hidden) + x, get, attn_ln, eps)
    return _layer_norm(_dense(act(_dense(attention, get, ffn_in, hidden, inter)), get, ffn_out, inter, hidden)
                       + attention, get, out_ln, eps)


def random_blocks(length: int, block: int, count: int, heads: int, seed: int) -> np.ndarray:
    """``[heads, length // block - 2, count]``: the random blocks the original's attention layer
    draws when built with ``seed`` (its layer index), row ``i - 1`` for query block ``i``; a
    ValueError where the original's NumPy raises one."""
    rng = np.random.RandomState(seed)
    if length in CUT_LENGTHS:
        return np.stack([_cut_rows(rng, block, count)[:length // block - 2] for _ in range(heads)])
    return _rows_by_part(rng, length, block, count, heads)


def _cut_rows(rng, block, count):
    n = PLAN_LENGTH // block
    middle = np.arange(1, n - 1)
    last = CUT_REACH // block - 1 if CUT_REACH > 2 * block else n - 1
    rows = np.zeros((n - 2, count), dtype=np.int64)
    for i in range(1, n - 1):
        if i == 1:
            pool = middle[2:last]
        elif i == 2:
            pool = middle[3:last]
        elif i >= n - 3 or i - 2 > last:
            pool = middle[:last]
        elif i + 1 == last:
            pool = middle[:i - 2]
        else:
            pool = np.concatenate([middle[:i - 2], middle[i + 1:last]])
        rows[i - 1] = rng.permutation(pool)[:count]
    return rows


def _rows_by_part(rng, length, block, count, heads):
    n = length // block
    if 2 * count + 5 < n:
        ends, counts = [(2 * count + 5) * block, length], [count, 0]
    elif count + 5 < n:
        ends, counts = [(count + 5) * block, length], [count // 2, count - count // 2]
    else:
        ends, counts = [length], [count]
    bounds = [e // block for e in ends]
    columns = np.cumsum([0, *counts])
    last = ends.index(length)
    table = np.zeros((heads, n, columns[last + 1]), dtype=np.int64)

    def pick(row, low, high, want):
        banned = {row - 1, row, row + 1, 0, high - 1} | ({high - 2} if row == 1 else set()) | \
            ({1} if row == high - 2 else set())
        chosen = []
        for candidate in rng.permutation(np.arange(low, high)):
            if candidate not in banned:
                chosen.append(candidate)
            if len(chosen) == want:
                break
        return np.array(chosen, dtype=np.int64)

    def fill(part_of_columns, rows, low, high):
        for row in rows:
            for head in range(heads):
                table[head, row, columns[part_of_columns]:columns[part_of_columns + 1]] = pick(
                    row, low, high, counts[part_of_columns])

    for part in range(last + 1):
        if part > 0:
            if counts[part] > 0:
                fill(part, range(1, bounds[part - 1]), bounds[part - 1], bounds[part])
            for earlier in range(part):
                if counts[earlier]:
                    fill(earlier, range(bounds[part - 1], bounds[part]), bounds[earlier - 1] if earlier else 0,
                         bounds[earlier])
        if counts[part]:
            start = bounds[part - 1] if part else 0
            fill(part, range(start if part else 1, bounds[part]), start, bounds[part])
    return table[:, 1:n - 1]
