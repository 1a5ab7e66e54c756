"""The RoFormer family (v1): Hugging Face ``RoFormer*`` models from ZhuiyiTechnology's TF1
checkpoints (Google's BERT names without a position table) and from bert4keras' ``model='roformer'``
Keras HDF5 files (``layouts.py``).

Transformers' RoFormer has no pooler and no NSP head: a pooler in the source is written anyway
(every trained weight is kept) and ignored by the class; an NSP head is not exported. NEZHA and
RoFormer-v2, which look alike on disk, are families of their own, detected first; read as RoFormer
they are refused (see ``layouts.py``). Its PyTorch model
(``model.py``) and float64 reference (``reference.py``) load only when used; the tokenizer is
BERT's WordPiece from ``vocab.txt``.
"""
from __future__ import annotations

import re

from ..base import Family, MemoryStructure
from .layouts import LAYOUTS

#: the original's MLM head tensors, in the canonical names (the reference states them too)
MLM_TENSORS = ("cls/predictions/transform/dense/kernel", "cls/predictions/transform/dense/bias",
               "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/LayerNorm/beta",
               "cls/predictions/output_bias")


class RoFormerMemory(MemoryStructure):
    # rotary positions are computed, not looked up: no position table
    def structure(self, config):
        return {"position_table": False}

    def replay_embeddings(self, replay):
        return replay.bert_embeddings(position_table=False)


class RoFormerFamily(Family):
    name = "roformer"
    model_type = "roformer"
    architectures = {
        frozenset(): "RoFormerModel",
        frozenset({"mlm"}): "RoFormerForMaskedLM",
    }
    # transformers' RoFormer has no pooler at all
    without_pooler = frozenset(architectures.values())
    tied = {"cls.predictions.decoder.weight": "roformer.embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias"}
    # Hugging Face RoFormer state dicts also carry the sinusoid table transformers computes at
    # load time (``encoder.embed_positions.weight``): not a trained weight
    index_buffers = re.compile(r"^(\w+\.)?(embeddings\.(position_ids|token_type_ids)|encoder\.embed_positions\.weight)$")
    head_descriptions = {"mlm": "masked LM", "nsp": "next sentence (no RoFormer class has one: not exported)"}
    # no RoFormer task head is read from these sources
    task_heads = frozenset()
    runs_in_transformers = True

    pooler_weight = "roformer.pooler.dense.weight"
    head_tensors = {"mlm": MLM_TENSORS}
    # v1 rotates queries and keys only; embedding_size is left to transformers' default
    # (hidden_size), which is what v1 checkpoints have
    hf_config_fields = {"pad_token_id": 0, "rotary_value": False, "tie_word_embeddings": True}
    memory = RoFormerMemory()

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import build_model
        return build_model(config, architecture, with_pooler=with_pooler)

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import roformer_reference_forward
        return roformer_reference_forward(weights, config, inputs, heads=heads)


FAMILY = RoFormerFamily(LAYOUTS)
