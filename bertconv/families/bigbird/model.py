"""bertconv's PyTorch model of BigBird with full attention: BERT's modules under the same names
(Hugging Face's BigBird classes keep BERT's module tree, but for the pooler, a bare linear layer
``bert.pooler``), which compute what the original's ``original_full`` attention computes."""
from __future__ import annotations

import torch
from torch import nn

from ..bert.model import BertEncoderModel, BertWithHeads, activation


class BigBirdPooler(nn.Linear):
    """``tanh(W h_0 + b)`` with the weight and bias directly under ``bert.pooler``."""

    def __init__(self, config):
        super().__init__(config.hidden_size, config.hidden_size)

    def forward(self, sequence):
        return torch.tanh(super().forward(sequence[:, 0]))


def build_model(config, architecture: str, heads: frozenset, *, with_pooler: bool):
    activation(config.hidden_act)  # fail on an unknown activation before allocating anything
    if not heads:
        model = BertEncoderModel(config, with_pooler=with_pooler)
        model.architecture, model.heads = architecture, frozenset()
        encoder = model
    else:
        model = BertWithHeads(config, architecture, heads, with_pooler=with_pooler)
        encoder = model.bert
    if with_pooler:
        encoder.pooler = BigBirdPooler(config)
    return model.eval()
