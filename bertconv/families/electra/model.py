"""bertconv's own PyTorch ELECTRA (either tower): the module tree is Hugging Face's ``Electra*``
state-dict naming, so a converted file loads here and in ``transformers`` alike. Inference only.

Numerics follow google-research/electra: embeddings of width ``embedding_size``, projected by
``embeddings_project`` when that differs from ``hidden_size``; BERT's encoder; no pooler; the
discriminator's head ``dense_prediction(act(dense(h)))`` gives one logit per token, the generator's
``LayerNorm(act(dense(h)))`` times the word embeddings plus a bias. ``hidden_act`` has Hugging
Face's meaning: ELECTRA's "gelu" is the exact erf GELU, which is Hugging Face's "gelu" too.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ... import outputs as out
from ...config import BertConfig
from ..bert.model import BertEmbeddings, BertLayer, activation, encode

class ElectraEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class ElectraEncoderModel(nn.Module):
    """Hugging Face's ``ElectraModel``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        width = config.embedding_size or config.hidden_size
        self.embeddings = BertEmbeddings(dataclasses.replace(config, hidden_size=width, num_attention_heads=1))
        if width != config.hidden_size:
            self.embeddings_project = nn.Linear(width, config.hidden_size)
        self.encoder = ElectraEncoder(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        return encode(self, input_ids, token_type_ids, attention_mask)


class ElectraDiscriminatorPredictions(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dense_prediction = nn.Linear(config.hidden_size, 1)
        self.act = activation(config.hidden_act)

    def forward(self, sequence):
        return self.dense_prediction(self.act(self.dense(sequence))).squeeze(-1)  # [B, T]


class ElectraGeneratorPredictions(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        width = config.embedding_size or config.hidden_size
        self.dense = nn.Linear(config.hidden_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.act = activation(config.hidden_act)

    def forward(self, sequence):
        return self.LayerNorm(self.act(self.dense(sequence)))


class GeneratorLMHead(nn.Module):
    """Only the bias: the weight is the word-embedding matrix, passed in at call time."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))


class ElectraWithHeads(nn.Module):
    def __init__(self, config: BertConfig, architecture: str, heads: frozenset):
        super().__init__()
        self.architecture = architecture
        self.heads = heads
        self.config = config
        self.electra = ElectraEncoderModel(config)
        if "discriminator" in self.heads:
            self.discriminator_predictions = ElectraDiscriminatorPredictions(config)
        if "mlm" in self.heads:
            self.generator_predictions = ElectraGeneratorPredictions(config)
            self.generator_lm_head = GeneratorLMHead(config)


    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        results = self.electra(input_ids, token_type_ids, attention_mask)
        sequence = results[out.SEQUENCE]
        if "discriminator" in self.heads:
            results[out.DISCRIMINATOR_LOGITS] = self.discriminator_predictions(sequence)
        if "mlm" in self.heads:
            results[out.MLM_LOGITS] = F.linear(self.generator_predictions(sequence),
                                               self.electra.embeddings.word_embeddings.weight,
                                               self.generator_lm_head.bias)
        return results


def build_model(config: BertConfig, architecture: str, heads: frozenset) -> nn.Module:
    """A model of ``architecture`` with ``heads`` (its weights are meant to be loaded next)."""
    activation(config.hidden_act)
    if not heads:
        model = ElectraEncoderModel(config)
        model.architecture, model.heads = architecture, frozenset()
    else:
        model = ElectraWithHeads(config, architecture, heads)
    return model.eval()
