"""bertconv's PyTorch NEZHA (huawei-noah's NEZHA-TensorFlow ``modeling.py``), under Hugging Face's
``Nezha*`` state-dict names.

This module imports only torch: it is written as it is into the ``modeling_nezha.py`` of every
converted NEZHA directory (bertconv/families/remote_code.py), so it must stay self-contained.

NEZHA is BERT without a position table: each layer's attention adds functional relative
positions. For query ``i`` and key ``j`` the row ``clip(j - i, -64, 64) + 64`` of a fixed
sinusoid table of 129 rows is taken (its sine and cosine are of the shifted row index 0..128, not
of ``j - i``; the original clips at 64 whatever the config says); the same row is added to the
scores through the query (before the ``1/sqrt(d)`` scale) and to the context through the
attention probabilities. Everything else is google-research/bert's: post-LayerNorm blocks, padded
keys at -10000, the pooler, the MLM head (decoder tied to the word embeddings), the NSP head and
run_classifier's classifier.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

#: modeling.py's ``attention_layer`` sets this, ignoring the config
MAX_RELATIVE_POSITION = 64
#: modeling.py's additive value for padded keys
ATTENTION_MASK_VALUE = -10000.0

ACTIVATIONS = {
    "gelu": F.gelu,  # Hugging Face's "gelu" is the exact erf form
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # what NEZHA's "gelu" computes
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


def activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"hidden_act {name!r} is not supported; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class Embedding(nn.Embedding):
    """``nn.Embedding`` that draws no values on the meta device (the weights are loaded next)."""

    def reset_parameters(self):
        if self.weight.device.type != "meta":
            super().reset_parameters()


def relative_positions(length, depth, dtype, device=None):
    """[T, T, depth]: for query i and key j, row ``clip(j - i, -64, 64) + 64`` of the sinusoid table."""
    rows = 2 * MAX_RELATIVE_POSITION + 1
    # the table in float64, as modeling.py builds it in NumPy before casting it
    position = torch.arange(rows, dtype=torch.float64, device=device)[:, None]
    rate = torch.pow(torch.tensor(10000.0, dtype=torch.float64),
                     2.0 * torch.arange(depth // 2, dtype=torch.float64, device=device) / depth)
    table = torch.zeros(rows, depth, dtype=torch.float64, device=device)
    table[:, 0:2 * (depth // 2):2] = torch.sin(position / rate)
    table[:, 1:2 * (depth // 2):2] = torch.cos(position / rate)
    index = torch.arange(length, device=device)
    distance = (index[None, :] - index[:, None]).clamp(-MAX_RELATIVE_POSITION, MAX_RELATIVE_POSITION)
    return table.to(dtype)[distance + MAX_RELATIVE_POSITION]


class NezhaEmbeddings(nn.Module):
    """Word and token-type lookups, then LayerNorm: no position table."""

    def __init__(self, config):
        super().__init__()
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, token_type_ids):
        return self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids))


class NezhaSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x, mask_adder, relative):
        batch, seq_len, hidden = x.shape

        def heads_first(t):
            return t.view(batch, seq_len, self.num_heads, self.head_size).transpose(1, 2)  # [B, A, T, d]

        query, key, value = heads_first(self.query(x)), heads_first(self.key(x)), heads_first(self.value(x))
        scores = torch.matmul(query, key.transpose(-1, -2)) + torch.einsum("bhid,ijd->bhij", query, relative)
        scores = scores * (1.0 / math.sqrt(self.head_size))
        # mask and softmax in at least float32, as the padded keys' -10000 needs
        compute = torch.promote_types(scores.dtype, torch.float32)
        probs = torch.softmax(scores.to(compute) + mask_adder, dim=-1).to(value.dtype)
        context = torch.matmul(probs, value) + torch.einsum("bhij,ijd->bhid", probs, relative)
        return context.transpose(1, 2).reshape(batch, seq_len, hidden)


class NezhaSelfOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class NezhaAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self = NezhaSelfAttention(config)
        self.output = NezhaSelfOutput(config)

    def forward(self, x, mask_adder, relative):
        return self.output(self.self(x, mask_adder, relative), x)


class NezhaIntermediate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class NezhaOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class NezhaLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = NezhaAttention(config)
        self.intermediate = NezhaIntermediate(config)
        self.output = NezhaOutput(config)

    def forward(self, x, mask_adder, relative):
        attention = self.attention(x, mask_adder, relative)
        return self.output(self.intermediate(attention), attention)


class NezhaEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(NezhaLayer(config) for _ in range(config.num_hidden_layers))


class NezhaPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


class Encoder(nn.Module):
    """The encoder (Hugging Face's ``NezhaModel``): a dict of named outputs, ``embeddings``,
    ``layer_<i>``, ``sequence_output`` and, with a pooler, ``pooled_output``."""

    def __init__(self, config, with_pooler=True, num_labels=2):
        super().__init__()
        self.config = config
        self.embeddings = NezhaEmbeddings(config)
        self.encoder = NezhaEncoder(config)
        self.pooler = NezhaPooler(config) if with_pooler else None

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        results = {"embeddings": x}
        compute = torch.promote_types(x.dtype, torch.float32)
        mask_adder = ((1.0 - attention_mask.to(compute)) * ATTENTION_MASK_VALUE)[:, None, None, :]
        layers = self.encoder.layer
        head_size = x.shape[-1] // layers[0].attention.self.num_heads if len(layers) else 1
        relative = relative_positions(input_ids.shape[1], head_size, x.dtype, x.device)
        for i, layer in enumerate(layers):
            x = layer(x, mask_adder, relative)
            results[f"layer_{i}"] = x
        results["sequence_output"] = x
        if self.pooler is not None:
            results["pooled_output"] = self.pooler(x)
        return results


def mlm_layer_norm_eps(config):
    """The MLM head's LayerNorm epsilon: the config's ``mlm_layer_norm_eps`` where it states one
    (bert4keras' NEZHA: 1e-12 there, 1e-7 elsewhere), else ``layer_norm_eps``."""
    eps = getattr(config, "mlm_layer_norm_eps", None)
    if eps is None:
        eps = getattr(config, "extra", {}).get("mlm_layer_norm_eps")
    return config.layer_norm_eps if eps is None else eps


class NezhaPredictionHeadTransform(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=mlm_layer_norm_eps(config))

    def forward(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class NezhaLMPredictionHead(nn.Module):
    """The transform, then the word-embedding table itself as decoder (tied), plus a bias."""

    def __init__(self, config):
        super().__init__()
        self.transform = NezhaPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x, word_embeddings):
        return torch.matmul(self.transform(x), word_embeddings.t()) + self.bias


class NezhaHeads(nn.Module):
    """``cls``: the MLM head and, for pretraining, the next-sentence head."""

    def __init__(self, config, with_nsp):
        super().__init__()
        self.predictions = NezhaLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if with_nsp else None


class MaskedLM(nn.Module):
    def __init__(self, config, with_pooler=False, num_labels=2):
        super().__init__()
        self.nezha = Encoder(config, with_pooler=with_pooler)
        self.cls = NezhaHeads(config, with_nsp=False)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.nezha(input_ids, token_type_ids, attention_mask)
        results["mlm_logits"] = self.cls.predictions(results["sequence_output"],
                                                     self.nezha.embeddings.word_embeddings.weight)
        return results


class PreTraining(nn.Module):
    def __init__(self, config, with_pooler=True, num_labels=2):
        super().__init__()
        self.nezha = Encoder(config, with_pooler=True)
        self.cls = NezhaHeads(config, with_nsp=True)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.nezha(input_ids, token_type_ids, attention_mask)
        results["mlm_logits"] = self.cls.predictions(results["sequence_output"],
                                                     self.nezha.embeddings.word_embeddings.weight)
        results["nsp_logits"] = self.cls.seq_relationship(results["pooled_output"])
        return results


class SequenceClassification(nn.Module):
    """run_classifier.py's head: a dense on the pooled output."""

    def __init__(self, config, with_pooler=True, num_labels=2):
        super().__init__()
        self.nezha = Encoder(config, with_pooler=True)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.nezha(input_ids, token_type_ids, attention_mask)
        results["classifier_logits"] = self.classifier(results["pooled_output"])
        return results


#: Hugging Face architecture -> the class above that computes it
ARCHITECTURES = {"NezhaModel": Encoder, "NezhaForMaskedLM": MaskedLM, "NezhaForPreTraining": PreTraining,
                 "NezhaForSequenceClassification": SequenceClassification}
