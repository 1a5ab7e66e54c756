"""An independent float64 forward pass of laiguokun/Funnel-Transformer's TensorFlow model, over its
own variable names (``model/encoder/layer_0/rel_attn/q/kernel``...).

It shares no code with the PyTorch model or the name tables; from BERT's reference it takes the
generic pieces (LayerNorm, softmax, lazy weight access). It follows ``modeling.py`` and ``ops.py``
in inference mode, by another route than ``model.py``:

- the relative position term is computed from explicit pairwise distances, as the original's
  ``rel_shift`` form does (``model.py`` takes the factorized form): for query position ``p_i``
  and key position ``p_j``, ``[sin((p_i - p_j) f), cos((p_i - p_j) f)]`` with
  ``f_k = 10000^(-k / (d_model / 2))``, projected by ``r/kernel`` per head;
- pooling walks the windows one by one: [CLS] kept apart, the last token left out
  (``truncate_seq``), a window's mean (or max) over its valid elements, a pooled position padding
  only when its whole window is; positions and segment ids take each window's first element;
- the decoder's input is the last block's output repeated ``2^(blocks - 1)`` times (zeros past
  its end), plus the first block's output;
- sizes (d_model, n_head, d_head) are read from the tower's own query kernels;
- heads: ``binary_proj``/``binary_loss`` (discriminator), ``lm_proj``/``lm_loss`` with the word
  embeddings as output weights (generator), ``sequnece_summary`` and the task's ``logit``
  (classifier.py).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from ...errors import InputError
from ..bert.reference import _gelu_erf, _gelu_tanh, _layer_norm, _softmax, _Weights

EPS = 1e-8
SCOPES = {"discriminator": "model", "generator": "generator"}
#: the original's activation names (its "gelu" is the tanh form), and the converted config's
_ACT = {"gelu": _gelu_tanh, "gelu_new": _gelu_tanh, "gelu_exact": _gelu_erf, "relu": lambda x: np.maximum(x, 0), "tanh": np.tanh}
_TASK = re.compile(r"^model/([^/]+)/logit/kernel$")


def _setting(config, name, default):
    value = config.extra.get(name)
    return default if value is None else value


def _blocks(spec: str) -> list[tuple[int, int]]:
    out = []
    for part in spec.split("_"):
        pieces = [int(p) for p in part.split("x")]
        out.append((pieces[0], pieces[1] if len(pieces) > 1 else 1))
    return out


def _names(weights) -> list[str]:
    try:
        return [getattr(item, "name", item) for item in weights]
    except TypeError:
        return []


def _dense(x, get, scope, activation=None):
    kernel = get(f"{scope}/kernel")
    y = np.tensordot(x, kernel, axes=([x.ndim - 1], [0]))
    if get.has(f"{scope}/bias"):
        y = y + get(f"{scope}/bias")
    return activation(y) if activation else y


class _Pool:
    def __init__(self, size, mode, truncate):
        self.size, self.mode, self.truncate = size, mode, truncate

    def _windows(self, length):
        """The index ranges of the body's windows (TensorFlow's SAME: padding split, the larger
        half after)."""
        body = list(range(1, length - 1 if self.truncate else length))
        extra = (-len(body)) % self.size
        start = -(extra // 2)
        windows = []
        for begin in range(start, len(body) + (extra - extra // 2) - self.size + 1, self.size):
            windows.append([body[i] for i in range(begin, begin + self.size) if 0 <= i < len(body)])
        return windows

    def values(self, x, how):
        """x [B, T, ...] -> [B, 1 + windows, ...] by ``how`` (mean, max, min) over each window."""
        rows = [x[:, 0]]
        for window in self._windows(x.shape[1]):
            part = x[:, window]
            rows.append(part.mean(1) if how == "mean" else part.max(1) if how == "max" else part.min(1))
        return np.stack(rows, axis=1)

    def first(self, x):
        """Each window's first element (positions, segment ids), [CLS] kept."""
        picks = [0] + [self._stride_index(w) for w in self._windows(x.shape[-1])]
        return x[..., picks]

    def _stride_index(self, window):
        return window[0]


def _attention(query, key, get, scope, *, pos_q, pos_k, seg_q, seg_k, key_pad, n_head, d_head, d_model):
    scale = 1.0 / math.sqrt(d_head)
    q = np.einsum("bid,dnh->binh", query, get(f"{scope}/q/kernel")) * scale
    k = np.einsum("bjd,dnh->bjnh", key, get(f"{scope}/k/kernel")) + get(f"{scope}/k/bias")
    v = np.einsum("bjd,dnh->bjnh", key, get(f"{scope}/v/kernel")) + get(f"{scope}/v/bias")
    content = np.einsum("binh,bjnh->bnij", q + get(f"{scope}/r_w_bias") * scale, k)
    half = d_model // 2
    freq = 1.0 / 10000 ** (np.arange(half) / half)
    distance = (pos_q[:, None] - pos_k[None, :]).astype(np.float64)
    angle = distance[..., None] * freq
    encoding = np.concatenate([np.sin(angle), np.cos(angle)], axis=-1)  # [I, J, d_model]
    r_head = np.einsum("ijd,dnh->ijnh", encoding, get(f"{scope}/r/kernel"))
    position = np.einsum("binh,ijnh->bnij", q + get(f"{scope}/r_r_bias") * scale, r_head)
    seg = np.einsum("binh,snh->bnis", q + get(f"{scope}/r_s_bias") * scale, get(f"{scope}/seg_embed"))
    same = (seg_q[:, :, None] == seg_k[:, None, :]) | (seg_q[:, :, None] == 2) | (seg_k[:, None, :] == 2)
    segment = np.where(same[:, None], seg[..., 1:2], seg[..., 0:1])
    cls = np.ones((len(pos_q), len(pos_k)))
    cls[0, :] = cls[:, 0] = 0
    scores = content + (position + segment) * cls - 1e6 * key_pad[:, None, None, :]
    context = np.einsum("bnij,bjnh->binh", _softmax(scores), v)
    out = np.einsum("binh,nhd->bid", context, get(f"{scope}/o/kernel")) + get(f"{scope}/o/bias")
    return _layer_norm(query + out, get, f"{scope}/layer_norm", EPS)


def _layer(query, key, get, scope, act, **kw):
    x = _attention(query, key, get, f"{scope}/rel_attn", **kw)
    h = _dense(_dense(x, get, f"{scope}/ff/layer_1", act), get, f"{scope}/ff/layer_2")
    return _layer_norm(x + h, get, f"{scope}/ff/layer_norm", EPS)


def funnel_reference_forward(weights: Any, config, inputs: MappingABC, *, tower: str = "discriminator",
                             heads=None) -> dict[str, np.ndarray]:
    """Every named output of one Funnel model (``tower``: the pretraining checkpoint's
    discriminator or generator; a fine-tune's model is the discriminator's scope); ``heads``: the
    heads to compute (None: every one the weights have)."""
    if tower not in SCOPES:
        raise InputError(f"unknown Funnel tower {tower!r}", hint="choose discriminator or generator")
    get = _Weights(weights)
    scope = SCOPES[tower]
    act = _ACT[config.hidden_act]
    # the sizes of this tower are its own tensors' (the generator's are net_config.json's narrowed
    # by pretrain.py's width_shrink, which no file records)
    d_model, n_head, d_head = get.stored(f"{scope}/encoder/layer_0/rel_attn/q/kernel").shape
    pool = _Pool(int(_setting(config, "pooling_size", 2)), _setting(config, "pooling_type", "mean"),
                 bool(_setting(config, "truncate_seq", True)))
    pool_q_only = bool(_setting(config, "pool_q_only", True))
    blocks = _blocks(str(_setting(config, "block_size", "3_3_3")))
    ids = np.asarray(inputs["input_ids"])
    seg = np.asarray(inputs.get("token_type_ids", np.zeros_like(ids)))
    pad = 1.0 - np.asarray(inputs.get("attention_mask", np.ones_like(ids))).astype(np.float64)
    results = {}
    x = _layer_norm(get("model/input/word_embedding/lookup_table")[ids], get, "model/input/layer_norm", EPS)
    results["embeddings"] = x
    if get.has(f"{scope}/encoder/input_projection/kernel"):
        x = _dense(x, get, f"{scope}/encoder/input_projection")
    pos = np.arange(ids.shape[1])
    full = dict(pos=pos, seg=seg, pad=pad)
    kw = dict(n_head=n_head, d_head=d_head, d_model=d_model)
    hiddens, layer_index = [], 0
    for block, (size, repeat) in enumerate(blocks):
        for param in range(size):
            name = f"{scope}/encoder/layer_{layer_index}"
            for run in range(repeat):
                if block > 0 and param == 0 and run == 0:
                    pooled = pool.values(x, pool.mode)
                    new_pos, new_seg, new_pad = pool.first(pos), pool.first(seg), pool.values(pad, "min")
                    if pool_q_only:
                        x = _layer(pooled, x, get, name, act, pos_q=new_pos, pos_k=pos, seg_q=new_seg, seg_k=seg,
                                   key_pad=pad, **kw)
                    else:
                        x = _layer(pooled, pooled, get, name, act, pos_q=new_pos, pos_k=new_pos, seg_q=new_seg,
                                   seg_k=new_seg, key_pad=new_pad, **kw)
                    pos, seg, pad = new_pos, new_seg, new_pad
                else:
                    x = _layer(x, x, get, name, act, pos_q=pos, pos_k=pos, seg_q=seg, seg_k=seg, key_pad=pad, **kw)
                results[f"layer_{len(hiddens)}"] = x
                hiddens.append(x)
            layer_index += 1
    output = x
    names = _names(weights)
    decoder_layers = sorted({int(m.group(1)) for n in names
                             for m in [re.match(rf"^{scope}/decoder/layer_(\d+)/", n)] if m})
    wanted = set(heads) if heads is not None else {"discriminator", "mlm", "classifier"}
    # the decoder runs under the pretraining heads only (classifier.py builds none)
    wants_decoder = bool(wanted & {"discriminator", "mlm"}) and (tower == "generator"
                                                                 or get.has("model/binary_loss/weight"))
    # modeling.py's decoder: the bridge whenever there was pooling, then its layers (maybe none)
    if wants_decoder and len(blocks) > 1:
        length = ids.shape[1]
        stride = 2 ** (len(blocks) - 1)
        up = np.zeros_like(hiddens[0])
        up[:, 0] = x[:, 0]
        for i in range(1, length):
            source = 1 + (i - 1) // stride
            if source < x.shape[1]:
                up[:, i] = x[:, source]
        output = up + hiddens[blocks[0][0] * blocks[0][1] - 1]
        repeat = _blocks(str(_setting(config, "decoder_size", "2")))[0][1]
        for index in decoder_layers:
            for _ in range(repeat):
                output = _layer(output, output, get, f"{scope}/decoder/layer_{index}", act, pos_q=full["pos"],
                                pos_k=full["pos"], seg_q=full["seg"], seg_k=full["seg"], key_pad=full["pad"], **kw)
    results["sequence_output"] = output
    if tower == "generator" and "mlm" in wanted and get.has("generator/lm_loss/bias"):
        h = _layer_norm(_dense(output, get, "generator/lm_proj/dense", act), get, "generator/lm_proj/layer_norm", EPS)
        table = get("model/input/word_embedding/lookup_table")
        results["mlm_logits"] = h @ table.T + get("generator/lm_loss/bias")
    if tower == "discriminator" and "discriminator" in wanted and get.has("model/binary_loss/weight"):
        h = _dense(output, get, "model/binary_proj/dense", _gelu_tanh)
        results["discriminator_logits"] = h @ get("model/binary_loss/weight") + get("model/binary_loss/bias")[0]
    tasks = sorted({m.group(1) for n in names for m in [_TASK.match(n)] if m})
    if tower == "discriminator" and "classifier" in wanted and tasks and get.has("model/sequnece_summary/summary/kernel"):
        pooled = _dense(output[:, 0], get, "model/sequnece_summary/summary", np.tanh)
        results["pooled_output"] = pooled
        results["classifier_logits"] = _dense(pooled, get, f"model/{tasks[0]}/logit")
    return results
