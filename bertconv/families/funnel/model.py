"""bertconv's PyTorch Funnel-Transformer, computing what laiguokun/Funnel-Transformer's TensorFlow
``modeling.py`` and ``ops.py`` compute.

This module imports only torch: it is written as it is into the ``modeling_funnel_original.py`` of
every converted Funnel directory (bertconv/families/remote_code.py), so it must stay
self-contained. transformers' ``Funnel*`` classes are not used because they compute something else
for the same weights: their mask pooling drops a pooled position when any token of its window is
padding (the original keeps it unless all are), their masked-LM head is one linear layer (the
original's is dense, activation, LayerNorm, then the tied output), and they have no input
projection, no repeated layers (``block_size`` ``1x2``) and no ``d_head`` of its own.

The original's numerics, as kept here: LayerNorm epsilon 1e-8 everywhere; ``"gelu"`` is the tanh
approximation (``gelu_new`` here); scores are ``(q + r_w_bias) . k``, plus ``(q + r_r_bias) . r(i - j)`` with
sinusoid relative positions projected by ``r_kernel`` (computed in the factorized form; the
original's rel-shift form gives the same numbers), plus the segment bias ``(q + r_s_bias) .
seg_embed[same]``, all after ``q`` is scaled by ``1/sqrt(d_head)``; the position and segment
terms are zero on the [CLS] row and column; padded keys get ``-1e6``; a token whose segment id is 2
(``seg_id_cls``) is of the same segment as every other. Pooling (``separate_cls``: [CLS] kept
apart; ``truncate_seq``: the last token left out before pooling) averages (or takes the maximum
of) windows of ``pooling_size`` over the valid tokens of the window, and a pooled position is
padding only when its whole window is.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

#: ops.py: the LayerNorm epsilon of float32 runs
LAYER_NORM_EPS = 1e-8
#: ops.py: subtracted from the scores of padded keys
MASK_VALUE = 1e6
#: data_utils.py's ``seg_id_cls``: the segment id of [CLS], in the same segment as every token
CLS_SEGMENT = 2

ACTIVATIONS = {
    "gelu": F.gelu,  # Hugging Face's "gelu" is the exact erf form
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # what the original's "gelu" computes (ops.gelu)
    "relu": F.relu,
    "tanh": torch.tanh,
}

#: the original config's keys this model reads, with the original code's defaults
#: (modeling.py's flags; ``truncate_seq`` is a run flag, not a config key)
DEFAULTS = {"block_size": "3_3_3", "decoder_size": "2", "d_head": 64, "separate_cls": True, "truncate_seq": True,
            "pool_q_only": True, "pooling_type": "mean", "pooling_size": 2, "rel_attn_type": "factorized"}


def option(config, name):
    """A Funnel setting: the config's attribute, else its ``extra`` (bertconv's BertConfig), else
    the original's default."""
    value = getattr(config, name, None)
    if value is None:
        value = getattr(config, "extra", {}).get(name)
    return DEFAULTS[name] if value is None else value


def depths(spec):
    """``"2_1x2"`` -> [(2, 1), (1, 2)]: per block, its layers with weights and how often each runs."""
    blocks = []
    for part in str(spec).split("_"):
        size, _, repeat = part.partition("x")
        blocks.append((int(size), int(repeat or 1)))
    return blocks


def activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"ff_activation {name!r} is not supported; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class Embedding(nn.Embedding):
    """``nn.Embedding`` that draws no values on the meta device (the weights are loaded next)."""

    def reset_parameters(self):
        if self.weight.device.type != "meta":
            super().reset_parameters()


class Embeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        width = config.embedding_size or config.hidden_size
        self.word_embeddings = Embedding(config.vocab_size, width)
        self.layer_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def forward(self, input_ids):
        return self.layer_norm(self.word_embeddings(input_ids))


class RelativeAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        d_model, heads, d_head = config.hidden_size, config.num_attention_heads, int(option(config, "d_head"))
        self.heads, self.d_head = heads, d_head
        self.q = nn.Linear(d_model, heads * d_head, bias=False)
        self.k = nn.Linear(d_model, heads * d_head)
        self.v = nn.Linear(d_model, heads * d_head)
        self.r = nn.Linear(d_model, heads * d_head, bias=False)
        self.r_w_bias = nn.Parameter(torch.zeros(heads, d_head))
        self.r_r_bias = nn.Parameter(torch.zeros(heads, d_head))
        self.r_s_bias = nn.Parameter(torch.zeros(heads, d_head))
        self.seg_embed = nn.Parameter(torch.zeros(2, heads, d_head))
        self.o = nn.Linear(heads * d_head, d_model)
        self.layer_norm = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)

    def forward(self, query, key, structure):
        batch, q_len, _ = query.shape
        k_len = key.shape[1]
        scale = 1.0 / math.sqrt(self.d_head)
        q = self.q(query).view(batch, q_len, self.heads, self.d_head) * scale
        k = self.k(key).view(batch, k_len, self.heads, self.d_head)
        v = self.v(key).view(batch, k_len, self.heads, self.d_head)
        content = torch.einsum("bind,bjnd->bnij", q + self.r_w_bias * scale, k)
        # position term, factorized: (q + r_r_bias) r_kernel^T against sin/cos of each side
        r_kernel = self.r.weight.view(self.heads, self.d_head, -1)
        qr = torch.einsum("bind,ndk->bink", q + self.r_r_bias * scale, r_kernel)
        sin_q, cos_q, sin_k, cos_k = structure["sinusoids"]
        half = sin_q.shape[-1]
        by_sin, by_cos = qr[..., :half], qr[..., half:]  # against sin(i - j) and cos(i - j)
        sin_q, cos_q = sin_q[None, :, None], cos_q[None, :, None]
        position = (torch.einsum("bink,jk->bnij", by_sin * sin_q, cos_k)
                    - torch.einsum("bink,jk->bnij", by_sin * cos_q, sin_k)
                    + torch.einsum("bink,jk->bnij", by_cos * cos_q, cos_k)
                    + torch.einsum("bink,jk->bnij", by_cos * sin_q, sin_k))
        segment_scores = torch.einsum("bind,snd->bnis", q + self.r_s_bias * scale, self.seg_embed)
        same = structure["same_segment"][:, None]  # [B, 1, I, J]
        segment = torch.where(same, segment_scores[..., 1:2], segment_scores[..., 0:1])
        scores = content + (position + segment) * structure["not_cls"]
        compute = torch.promote_types(scores.dtype, torch.float32)
        scores = scores.to(compute) - MASK_VALUE * structure["key_padding"].to(compute)[:, None, None, :]
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        context = torch.einsum("bnij,bjnd->bind", probs, v).reshape(batch, q_len, -1)
        return self.layer_norm(query + self.o(context))


class FeedForward(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.linear_1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.linear_2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=LAYER_NORM_EPS)

    def forward(self, x):
        return self.layer_norm(x + self.linear_2(self.act(self.linear_1(x))))


class Layer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = RelativeAttention(config)
        self.ffn = FeedForward(config)

    def forward(self, query, key, structure):
        return self.ffn(self.attention(query, key, structure))


class Pooling:
    """The original's pooling of sequences, positions, segments and masks along the length."""

    def __init__(self, config):
        self.size = int(option(config, "pooling_size"))
        self.mode = option(config, "pooling_type")
        self.truncate = bool(option(config, "truncate_seq"))

    def _body(self, t):
        return t[:, 1:-1] if self.truncate else t[:, 1:]

    def stride(self, t):
        """Every ``size``-th element after [CLS] (positions, segment ids), [CLS] kept."""
        return torch.cat([t[:, :1], self._body(t)[:, ::self.size]], dim=1)

    def windows(self, t, mode):
        """``[B, T(, H)]`` pooled over windows of ``size`` (the last one shorter: its valid elements
        only, as TensorFlow's SAME pooling), [CLS] kept."""
        body = self._body(t)
        extra = (-body.shape[1]) % self.size
        before = extra // 2  # TensorFlow's SAME: the larger half of the padding after
        squeeze = body.dim() == 2
        if squeeze:
            body = body[..., None]
        if mode == "mean":
            padded = F.pad(body, (0, 0, before, extra - before))
            count = F.pad(torch.ones_like(body[..., :1]), (0, 0, before, extra - before))
            pooled = padded.unflatten(1, (-1, self.size)).sum(2) / count.unflatten(1, (-1, self.size)).sum(2)
        else:
            fill = -math.inf if mode == "max" else math.inf
            grouped = F.pad(body, (0, 0, before, extra - before), value=fill).unflatten(1, (-1, self.size))
            pooled = grouped.amax(2) if mode == "max" else grouped.amin(2)
        if squeeze:
            pooled = pooled[..., 0]
        return torch.cat([t[:, :1], pooled.to(t.dtype)], dim=1)


def sinusoids(positions, d_model, dtype):
    """sin and cos of each position times the original's frequencies, ``[T, d_model / 2]`` each."""
    half = d_model // 2
    freq = 1.0 / (10000.0 ** (torch.arange(half, dtype=torch.float32, device=positions.device) / half))
    angle = positions.to(torch.float32)[:, None] * freq[None, :]
    return torch.sin(angle).to(dtype), torch.cos(angle).to(dtype)


class Side:
    """One side (queries or keys) of the attention structures: positions, segments, padding."""

    def __init__(self, positions, segments, padding):
        self.positions, self.segments, self.padding = positions, segments, padding

    def pooled(self, pooling):
        return Side(pooling.stride(self.positions[None])[0], pooling.stride(self.segments),
                    pooling.windows(self.padding, "min"))


def structure_of(query, key, d_model, dtype):
    sin_q, cos_q = sinusoids(query.positions, d_model, dtype)
    sin_k, cos_k = sinusoids(key.positions, d_model, dtype)
    q_seg, k_seg = query.segments[:, :, None], key.segments[:, None, :]
    same = (q_seg == k_seg) | (q_seg == CLS_SEGMENT) | (k_seg == CLS_SEGMENT)
    not_cls = torch.ones(query.positions.shape[0], key.positions.shape[0], dtype=dtype, device=same.device)
    not_cls[0, :] = 0
    not_cls[:, 0] = 0
    return {"sinusoids": (sin_q, cos_q, sin_k, cos_k), "same_segment": same, "not_cls": not_cls,
            "key_padding": key.padding}


class FunnelEncoder(nn.Module):
    """The blocks: each after the first pools the sequence (its first layer attends from the
    pooled queries to the unpooled keys, as ``pool_q_only``); a layer may run several times."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.blocks = depths(option(config, "block_size"))
        width = config.embedding_size or config.hidden_size
        self.input_projection = nn.Linear(width, config.hidden_size) if width != config.hidden_size else None
        self.layers = nn.ModuleList(Layer(config) for size, _ in self.blocks for _ in range(size))

    def forward(self, x, side):
        config = self.config
        pooling = Pooling(config)
        pool_q_only = bool(option(config, "pool_q_only"))
        if self.input_projection is not None:
            x = self.input_projection(x)
        hiddens, index = [], 0
        for block, (size, repeat) in enumerate(self.blocks):
            for _ in range(size):
                layer = self.layers[index]
                index += 1
                for run in range(repeat):
                    if block > 0 and len(hiddens) == sum(s * r for s, r in self.blocks[:block]):
                        pooled_x, pooled_side = pooling.windows(x, pooling.mode), side.pooled(pooling)
                        if pool_q_only:
                            structure = structure_of(pooled_side, side, config.hidden_size, x.dtype)
                            x = layer(pooled_x, x, structure)
                        else:
                            structure = structure_of(pooled_side, pooled_side, config.hidden_size, x.dtype)
                            x = layer(pooled_x, pooled_x, structure)
                        side = pooled_side
                    else:
                        x = layer(x, x, structure_of(side, side, config.hidden_size, x.dtype))
                    hiddens.append(x)
        return hiddens


class FunnelDecoder(nn.Module):
    """The bridge (the last block's output repeated back to full length, plus the first block's
    output), then the decoder layers at full length."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        size, repeat = depths(option(config, "decoder_size"))[0]
        self.repeat = repeat
        self.layers = nn.ModuleList(Layer(config) for _ in range(size))

    def forward(self, hiddens, side, blocks):
        length = side.positions.shape[0]
        first = hiddens[blocks[0][0] * blocks[0][1] - 1]
        last = hiddens[-1]
        stride = 2 ** (len(blocks) - 1)  # modeling.py's bridge_layer: 2 ** block_idx
        body = torch.repeat_interleave(last[:, 1:], stride, dim=1)[:, :length - 1]
        body = F.pad(body, (0, 0, 0, length - 1 - body.shape[1]))
        x = torch.cat([last[:, :1], body], dim=1) + first
        structure = structure_of(side, side, self.config.hidden_size, x.dtype)
        for layer in self.layers:
            for _ in range(self.repeat):
                x = layer(x, x, structure)
        return x


class Encoder(nn.Module):
    """The Funnel encoder, and its decoder where the model has one: a dict of named outputs,
    ``embeddings`` (after the embeddings' LayerNorm), ``layer_<i>`` (each run of an encoder layer,
    at its block's length) and ``sequence_output`` (the decoder's output, else the encoder's)."""

    def __init__(self, config, with_decoder=False):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = FunnelEncoder(config)
        self.decoder = FunnelDecoder(config) if with_decoder else None

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embeddings(input_ids)
        results = {"embeddings": x}
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        side = Side(positions, token_type_ids, (1 - attention_mask).to(x.dtype))
        hiddens = self.encoder(x, side)
        results.update({f"layer_{i}": h for i, h in enumerate(hiddens)})
        output = hiddens[-1]
        if self.decoder is not None and len(self.encoder.blocks) > 1:  # one block: no pooling to undo
            output = self.decoder(hiddens, side, self.encoder.blocks)
        results["sequence_output"] = output
        return results


class Discriminator(nn.Module):
    """``binary_proj`` (dense, gelu) and ``binary_loss`` (a weight vector and a bias)."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.prediction_weight = nn.Parameter(torch.zeros(config.hidden_size))
        self.prediction_bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.matmul(ACTIVATIONS["gelu_new"](self.dense(x)), self.prediction_weight) + self.prediction_bias


class LanguageModelHead(nn.Module):
    """``lm_proj`` (dense to the embedding width, the config's activation, LayerNorm), then the
    word embeddings as output weights and ``lm_loss``'s bias."""

    def __init__(self, config):
        super().__init__()
        width = config.embedding_size or config.hidden_size
        self.dense = nn.Linear(config.hidden_size, width)
        self.act = activation(config.hidden_act)
        self.layer_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x, word_embeddings):
        return torch.matmul(self.layer_norm(self.act(self.dense(x))), word_embeddings.t()) + self.bias


class Base(Encoder):
    """The bare encoder (its names carry no prefix, as Hugging Face saves a base model's)."""

    def __init__(self, config, with_pooler=False, num_labels=2):
        super().__init__(config, with_decoder=False)


class PreTraining(nn.Module):
    """The ELECTRA discriminator: one logit per token, over the decoder's output."""

    def __init__(self, config, with_pooler=False, num_labels=2):
        super().__init__()
        self.funnel_original = Encoder(config, with_decoder=True)
        self.discriminator_predictions = Discriminator(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.funnel_original(input_ids, token_type_ids, attention_mask)
        results["discriminator_logits"] = self.discriminator_predictions(results["sequence_output"])
        return results


class MaskedLM(nn.Module):
    """The ELECTRA generator: masked-LM logits over the decoder's output."""

    def __init__(self, config, with_pooler=False, num_labels=2):
        super().__init__()
        self.funnel_original = Encoder(config, with_decoder=True)
        self.lm_head = LanguageModelHead(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.funnel_original(input_ids, token_type_ids, attention_mask)
        results["mlm_logits"] = self.lm_head(results["sequence_output"],
                                             self.funnel_original.embeddings.word_embeddings.weight)
        return results


class SequenceClassification(nn.Module):
    """classifier.py's head: ``sequnece_summary`` (dense, tanh) on the first position of the
    encoder's output (no decoder), then the task's ``logit`` dense."""

    def __init__(self, config, with_pooler=True, num_labels=2):
        super().__init__()
        self.funnel_original = Encoder(config, with_decoder=False)
        self.summary = nn.Linear(config.hidden_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.funnel_original(input_ids, token_type_ids, attention_mask)
        results["pooled_output"] = torch.tanh(self.summary(results["sequence_output"][:, 0]))
        results["classifier_logits"] = self.classifier(results["pooled_output"])
        return results


#: Hugging Face architecture -> the class above that computes it
ARCHITECTURES = {"FunnelOriginalBaseModel": Base, "FunnelOriginalForPreTraining": PreTraining,
                 "FunnelOriginalForMaskedLM": MaskedLM,
                 "FunnelOriginalForSequenceClassification": SequenceClassification}
