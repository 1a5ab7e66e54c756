"""The ELECTRA family: Hugging Face ``Electra*`` models from google-research/electra checkpoints,
which hold two models (the discriminator and the generator, one layout each; ``--tower`` picks).
Releases ship no config file: sizes come from the shapes."""
from __future__ import annotations

from ..base import Family, MemoryStructure, Towers
from .layouts import DISCRIMINATOR, GENERATOR


class ElectraMemory(MemoryStructure):
    def structure(self, config):
        # the embeddings have their own width, projected before the encoder when it differs; the
        # generator's head works at that width, and ELECTRA's own GELU is the erf form
        width = int(config.get("embedding_size") or config["hidden_size"])
        return {"embedding_size": width, "embedding_projection": width != int(config["hidden_size"]),
                "mlm_width": width, "mlm_activation": "gelu", "projection_in_encoder": False}


class ElectraFamily(Family):
    name = "electra"
    model_type = "electra"
    architectures = {
        frozenset(): "ElectraModel",
        frozenset({"discriminator"}): "ElectraForPreTraining",
        frozenset({"mlm"}): "ElectraForMaskedLM",
    }
    # ELECTRA has no pooler at all
    without_pooler = frozenset(architectures.values())
    tied = {"generator_lm_head.weight": "electra.embeddings.word_embeddings.weight"}
    head_descriptions = {**Family.head_descriptions, "discriminator": "ELECTRA discriminator",
                         "generator_tower": "ELECTRA generator (--tower generator)",
                         "discriminator_tower": "ELECTRA discriminator (--tower discriminator)"}

    two_towers = Towers(layouts={"discriminator": DISCRIMINATOR.name, "generator": GENERATOR.name},
                        by_architecture={"ElectraForPreTraining": "discriminator", "ElectraForMaskedLM": "generator"})
    memory = ElectraMemory()

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import build_model
        return build_model(config, architecture, self.architecture_heads[architecture])

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import electra_reference_forward
        return electra_reference_forward(weights, config, inputs, tower=tower or "discriminator")


FAMILY = ElectraFamily([DISCRIMINATOR, GENERATOR])
