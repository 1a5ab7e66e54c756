"""The ConvBERT family: Hugging Face ``ConvBert*`` models from yitu-opensource/ConvBert's TF1
checkpoints, which hold ELECTRA's two towers (``--tower`` picks). The original writes no config
file: sizes come from the shapes, and so do the head count, ``head_ratio``, ``conv_kernel_size``
and ``linear_groups`` (``num_groups``); the activation is taken as "gelu" (the original's
default, its exact erf form)."""
from __future__ import annotations

from ..base import Family, Towers
from ..electra import ElectraMemory
from .layouts import DISCRIMINATOR, GENERATOR


class ConvBertMemory(ElectraMemory):
    def structure(self, config):
        # a layer: attention and convolution heads (half the heads each at BERT's head width), their
        # separable conv, the output dense over both, a feed-forward of num_groups groups
        shape = super().structure(config)
        h, i = int(config["hidden_size"]), int(config["intermediate_size"])
        heads, ratio = int(config["num_attention_heads"]), int(config["head_ratio"])
        k, groups = int(config["conv_kernel_size"]), int(config["num_groups"])
        a = max(1, heads // ratio) * (h // heads)
        n = max(1, heads // ratio)
        attention = 4 * (h * a + a) + (k * h + h * a + a) + (a * n * k + n * k) + 2 * a * h + h + 2 * h
        ffn = 2 * h * i // groups + i + h + 2 * h
        return {**shape, "layer_weights": attention + ffn}


class ConvBertFamily(Family):
    name = "convbert"
    model_type = "convbert"
    architectures = {
        frozenset(): "ConvBertModel",
        frozenset({"mlm"}): "ConvBertForMaskedLM",
    }
    without_pooler = frozenset(architectures.values())
    tied = {"generator_lm_head.weight": "convbert.embeddings.word_embeddings.weight"}
    head_descriptions = {**Family.head_descriptions, "discriminator": "ELECTRA-style discriminator (no ConvBERT "
                         "class in transformers 5: left out)",
                         "generator_tower": "ConvBERT generator (--tower generator)",
                         "discriminator_tower": "ConvBERT discriminator (--tower discriminator)"}
    head_tensors = {"mlm": ("generator_predictions/dense/kernel",)}
    two_towers = Towers(layouts={"discriminator": DISCRIMINATOR.name, "generator": GENERATOR.name},
                        by_architecture={"ConvBertForMaskedLM": "generator"})
    memory = ConvBertMemory()

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import build_model
        return build_model(config, architecture, self.architecture_heads[architecture])

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import convbert_reference_forward
        return convbert_reference_forward(weights, config, inputs, tower=tower or "discriminator", heads=heads)


FAMILY = ConvBertFamily([DISCRIMINATOR, GENERATOR])
