"""bertconv's own PyTorch MobileBERT, so that a converted model can be run and checked without
``transformers``.

This module imports only torch: it is written as it is into the ``modeling_mobilebert.py`` of a
converted ``layer_norm`` directory (bertconv/families/remote_code.py; transformers 5's MobileBert
builds two of its LayerNorms with epsilon 1e-5 whatever ``layer_norm_eps`` says), so it must stay
self-contained. It reads a configuration's fields as attributes (transformers' configs) or from
``extra`` (bertconv's BertConfig keeps MobileBERT's own keys there).

The module tree is Hugging Face's ``MobileBert*`` state-dict naming; the numerics are the
original modeling.py's (2020, the released checkpoints' code):

- embeddings: the word rows (``embedding_size`` wide), with ``trigram_input`` the next, this and
  the previous token's rows side by side (zeros past the ends), mapped to the hidden width by
  ``embedding_transformation`` where trigram or a narrower embedding asks for it (only then does
  the module exist: the original has no such weights otherwise); then position and token-type
  rows, then the normalisation;
- ``no_norm`` is ``x * weight + bias``; ``layer_norm`` a LayerNorm with the config's epsilon in
  every place (the original's is 1e-12 throughout);
- each layer: the bottleneck input (and, with a shared key/query bottleneck, its second
  projection for query and key; the value reads the layer's input), attention over the bottleneck
  width with ``-10000`` added for padded keys, the stacked feed-forward networks, the last one,
  then ``output.bottleneck`` back to the hidden width with the layer's input as residual;
- the pooler is ``tanh(dense(first token))`` with ``classifier_activation``, else the first token;
- the classifier (run_classifier.py's) reads the pooled output;
- the MLM logits are ``LayerNorm(act(dense(h))) @ [word_embeddings, extra]^T + bias``.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

#: modeling.py's (2020) additive value for padded keys
ATTENTION_MASK_VALUE = -10000.0

ACTIVATIONS = {
    "gelu": F.gelu,  # Hugging Face's "gelu" is the exact erf form
    "gelu_python": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # the tanh form google-research's "gelu" computes
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
    "silu": F.silu,
    "swish": F.silu,
    "linear": lambda x: x,
}


def activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"hidden_act {name!r} is not supported; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def extra(config, name, default):
    """A MobileBERT field: bertconv's BertConfig keeps them in ``extra``, transformers' configs
    as attributes."""
    own = getattr(config, "extra", None)
    if isinstance(own, dict) and name in own:
        return own[name]
    value = getattr(config, name, None)
    return default if value is None else value


class Embedding(nn.Embedding):
    """``nn.Embedding`` that draws no values on the meta device (the weights are loaded next)."""

    def reset_parameters(self):
        if self.weight.device.type != "meta":
            super().reset_parameters()


class NoNorm(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x):
        return x * self.weight + self.bias


def norm(config, width):
    kind = extra(config, "normalization_type", "layer_norm")
    if kind == "no_norm":
        return NoNorm(width)
    if kind == "layer_norm":
        return nn.LayerNorm(width, eps=config.layer_norm_eps)
    raise ValueError(f"normalization_type {kind!r} is not one of MobileBERT's (no_norm, layer_norm)")


class Dims:
    def __init__(self, config):
        self.hidden = config.hidden_size
        self.embedding = extra(config, "embedding_size", None) or config.hidden_size
        self.bottleneck = extra(config, "use_bottleneck", False)
        self.inner = extra(config, "intra_bottleneck_size", None) or config.hidden_size if self.bottleneck \
            else config.hidden_size
        self.bottleneck_attention = extra(config, "use_bottleneck_attention", False)
        self.shared = extra(config, "key_query_shared_bottleneck", False)
        self.ffn = int(extra(config, "num_feedforward_networks", 1))
        self.trigram = extra(config, "trigram_input", False)


class MobileBertEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        d = Dims(config)
        self.trigram = d.trigram
        self.transform = d.trigram or d.embedding != d.hidden
        self.word_embeddings = Embedding(config.vocab_size, d.embedding)
        if self.transform:
            self.embedding_transformation = nn.Linear(d.embedding * (3 if d.trigram else 1), d.hidden)
        self.position_embeddings = Embedding(config.max_position_embeddings, d.hidden)
        self.token_type_embeddings = Embedding(config.type_vocab_size, d.hidden)
        self.LayerNorm = norm(config, d.hidden)

    def forward(self, input_ids, token_type_ids):
        x = self.word_embeddings(input_ids)
        if self.trigram:
            x = torch.cat([F.pad(x[:, 1:], (0, 0, 0, 1)), x, F.pad(x[:, :-1], (0, 0, 1, 0))], dim=2)
        if self.transform:
            x = self.embedding_transformation(x)
        x = x + self.position_embeddings.weight[:input_ids.shape[1]].unsqueeze(0)
        return self.LayerNorm(x + self.token_type_embeddings(token_type_ids))


class DenseNorm(nn.Module):
    def __init__(self, config, n_in, n_out):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        self.LayerNorm = norm(config, n_out)


class Bottleneck(nn.Module):
    def __init__(self, config, d: Dims):
        super().__init__()
        self.input = DenseNorm(config, d.hidden, d.inner)
        if d.shared and not d.bottleneck_attention:
            self.attention = DenseNorm(config, d.hidden, d.inner)


class SelfAttention(nn.Module):
    def __init__(self, d: Dims, config, query_width: int, value_width: int):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = d.inner // config.num_attention_heads
        self.query = nn.Linear(query_width, d.inner)
        self.key = nn.Linear(query_width, d.inner)
        self.value = nn.Linear(value_width, d.inner)

    def forward(self, q, k, v, mask_adder):
        batch, seq_len, _ = q.shape

        def heads(t):
            return t.view(batch, seq_len, self.num_heads, self.head_size).transpose(1, 2)

        scores = torch.matmul(heads(self.query(q)), heads(self.key(k)).transpose(-1, -2)) / math.sqrt(self.head_size)
        compute = torch.promote_types(scores.dtype, torch.float32)
        probs = torch.softmax(scores.to(compute) + mask_adder, dim=-1).to(q.dtype)
        return torch.matmul(probs, heads(self.value(v))).transpose(1, 2).reshape(batch, seq_len, -1)


class Attention(nn.Module):
    def __init__(self, config, d: Dims):
        super().__init__()
        from_bottleneck = d.bottleneck and (d.bottleneck_attention or d.shared)
        query_width = d.inner if from_bottleneck else d.hidden
        value_width = d.inner if d.bottleneck and d.bottleneck_attention else d.hidden
        self.self = SelfAttention(d, config, query_width, value_width)
        self.output = DenseNorm(config, d.inner, d.inner)


class FFN(nn.Module):
    def __init__(self, config, d: Dims):
        super().__init__()
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(d.inner, config.intermediate_size)
        self.output = DenseNorm(config, config.intermediate_size, d.inner)
        self.act = activation(config.hidden_act)

    def forward(self, x):
        return self.output.LayerNorm(self.output.dense(self.act(self.intermediate.dense(x))) + x)


class Output(DenseNorm):
    def __init__(self, config, d: Dims):
        super().__init__(config, config.intermediate_size, d.inner)
        if d.bottleneck:
            self.bottleneck = DenseNorm(config, d.inner, d.hidden)


class MobileBertLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        d = self.dims = Dims(config)
        self.act = activation(config.hidden_act)
        if d.bottleneck:
            self.bottleneck = Bottleneck(config, d)
        self.attention = Attention(config, d)
        if d.ffn > 1:
            self.ffn = nn.ModuleList(FFN(config, d) for _ in range(d.ffn - 1))
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(d.inner, config.intermediate_size)
        self.output = Output(config, d)

    def forward(self, x, mask_adder):
        d = self.dims
        q = k = v = layer_input = x
        if d.bottleneck:
            b = self.bottleneck.input
            layer_input = b.LayerNorm(b.dense(x))
            if d.bottleneck_attention:
                q = k = v = layer_input
            elif d.shared:
                a = self.bottleneck.attention
                q = k = a.LayerNorm(a.dense(x))
        attention = self.attention.self(q, k, v, mask_adder)
        h = self.attention.output.LayerNorm(self.attention.output.dense(attention) + layer_input)
        for ffn in self.ffn if d.ffn > 1 else ():
            h = ffn(h)
        y = self.output.LayerNorm(self.output.dense(self.act(self.intermediate.dense(h))) + h)
        if d.bottleneck:
            y = self.output.bottleneck.LayerNorm(self.output.bottleneck.dense(y) + x)
        return y


class MobileBertEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(MobileBertLayer(config) for _ in range(config.num_hidden_layers))


class MobileBertPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.activate = extra(config, "classifier_activation", True)
        if self.activate:
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, sequence):
        first = sequence[:, 0]
        return torch.tanh(self.dense(first)) if self.activate else first


class Encoder(nn.Module):
    """The encoder (Hugging Face's ``MobileBertModel``): a dict of named outputs, ``embeddings``,
    ``layer_<i>``, ``sequence_output`` and, with a pooler, ``pooled_output``."""

    def __init__(self, config, with_pooler=True, num_labels=2):
        super().__init__()
        self.config = config
        self.embeddings = MobileBertEmbeddings(config)
        self.encoder = MobileBertEncoder(config)
        self.pooler = MobileBertPooler(config) if with_pooler else None

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        results = {"embeddings": x}
        # the mask in at least float32, as the padded keys' -10000 needs
        compute = torch.promote_types(x.dtype, torch.float32)
        mask_adder = ((1.0 - attention_mask.to(compute)) * ATTENTION_MASK_VALUE)[:, None, None, :]
        for i, layer in enumerate(self.encoder.layer):
            x = layer(x, mask_adder)
            results[f"layer_{i}"] = x
        results["sequence_output"] = x
        if getattr(self, "pooler", None) is not None:
            results["pooled_output"] = self.pooler(x)
        return results


class MobileBertLMPredictionHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        d = Dims(config)
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(d.hidden, d.hidden)
        self.transform.LayerNorm = nn.LayerNorm(d.hidden, eps=config.layer_norm_eps)
        self.act = activation(config.hidden_act)
        if d.hidden != d.embedding:
            self.dense = nn.Linear(config.vocab_size, d.hidden - d.embedding, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, sequence, word_embeddings):
        h = self.transform.LayerNorm(self.act(self.transform.dense(sequence)))
        table = word_embeddings if not hasattr(self, "dense") else torch.cat([word_embeddings, self.dense.weight.t()], 1)
        return F.linear(h, table, self.bias)


class WithHeads(nn.Module):
    """The encoder and the heads named in ``HEADS`` (run_pretraining.py's ``cls``, run_classifier.py's
    classifier). What runs is read from the modules present, so that a transformers class that
    adopts these modules runs this forward as it is."""

    HEADS = frozenset()

    def __init__(self, config, with_pooler=True, num_labels=2):
        super().__init__()
        heads = self.HEADS
        # the heads on the pooled output always have a pooler (without classifier_activation, the
        # first token as it is: no weights that say so)
        self.mobilebert = Encoder(config, with_pooler=with_pooler or bool(heads & {"nsp", "classifier"}))
        if "classifier" in heads:
            self.classifier = nn.Linear(config.hidden_size, num_labels)
        else:
            self.cls = nn.Module()
            if "mlm" in heads:
                self.cls.predictions = MobileBertLMPredictionHead(config)
            if "nsp" in heads:
                self.cls.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.mobilebert(input_ids, token_type_ids, attention_mask)
        cls = getattr(self, "cls", None)
        if cls is not None and getattr(cls, "predictions", None) is not None:
            results["mlm_logits"] = cls.predictions(results["sequence_output"],
                                                    self.mobilebert.embeddings.word_embeddings.weight)
        if cls is not None and getattr(cls, "seq_relationship", None) is not None:
            results["nsp_logits"] = cls.seq_relationship(results["pooled_output"])
        if getattr(self, "classifier", None) is not None:
            results["classifier_logits"] = self.classifier(results["pooled_output"])
        return results


class PreTraining(WithHeads):
    HEADS = frozenset({"mlm", "nsp"})


class MaskedLM(WithHeads):
    HEADS = frozenset({"mlm"})


class NextSentencePrediction(WithHeads):
    HEADS = frozenset({"nsp"})


class SequenceClassification(WithHeads):
    HEADS = frozenset({"classifier"})


#: Hugging Face architecture -> the class above that computes it
ARCHITECTURES = {"MobileBertModel": Encoder, "MobileBertForPreTraining": PreTraining,
                 "MobileBertForMaskedLM": MaskedLM, "MobileBertForNextSentencePrediction": NextSentencePrediction,
                 "MobileBertForSequenceClassification": SequenceClassification}
