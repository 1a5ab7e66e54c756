"""The MobileBERT family: Hugging Face ``MobileBert*`` models from google-research's MobileBERT
TF1 checkpoints (``mobilebert/``: bottlenecks, stacked feed-forward networks, ``no_norm``).

Its config file is named like the release (``uncased_L-24_H-128_B-512_A-4_F-4_OPT.json``); its keys
are BERT's plus MobileBERT's own, which transformers' MobileBertConfig names alike but defaults
otherwise, so every one is written out with the original code's default where the file leaves it
out. Checkpoints with ``normalization_type: layer_norm`` are refused: transformers 5's MobileBert
builds two of its LayerNorms with epsilon 1e-5 whatever ``layer_norm_eps`` says, where the
original uses 1e-12 (docs/compatibility.md gives the measured miss). The model (``model.py``) and
the float64 reference (``reference.py``) load only when used; the tokenizer is BERT's WordPiece.
"""
from __future__ import annotations

from ...errors import ConfigError
from ..base import Family, MemoryStructure
from ..bert import GOOGLE_CONFIG_KEYS
from .layouts import LAYOUT

#: modeling.py's BertConfig defaults for MobileBERT's own keys (None: the hidden width)
ORIGINAL_DEFAULTS = {"embedding_size": None, "trigram_input": False, "use_bottleneck": False,
                     "intra_bottleneck_size": None, "use_bottleneck_attention": False,
                     "key_query_shared_bottleneck": False, "num_feedforward_networks": 1,
                     "normalization_type": "layer_norm", "classifier_activation": True}


class MobileBertMemory(MemoryStructure):
    def structure(self, config):
        """The embeddings' own width, and the parameters of the bottlenecked layers counted as
        they are (Hugging Face's classes: an ``embedding_transformation`` always)."""
        h, i, v = int(config["hidden_size"]), int(config["intermediate_size"]), int(config["vocab_size"])
        e = int(config.get("embedding_size") or h)
        bottleneck = bool(config.get("use_bottleneck", False))
        inner = int(config.get("intra_bottleneck_size") or h) if bottleneck else h
        from_bottleneck = bool(config.get("use_bottleneck_attention", False))
        shared = bool(config.get("key_query_shared_bottleneck", False)) and not from_bottleneck
        architecture = (config.get("architectures") or ["MobileBertModel"])[0]
        norm = 2 * inner
        total = v * e + (int(config.get("max_position_embeddings", 512)) + int(config.get("type_vocab_size", 2))) * h
        total += 2 * h + (3 * e if config.get("trigram_input", False) else e) * h + h
        layer = 0
        if bottleneck:
            layer += h * inner + inner + norm + (h * inner + inner + norm if shared else 0)
        query_width = inner if bottleneck and (from_bottleneck or shared) else h
        value_width = inner if bottleneck and from_bottleneck else h
        layer += 2 * (query_width * inner + inner) + value_width * inner + inner + inner * inner + inner + norm
        ffn = inner * i + i + i * inner + inner + norm
        layer += int(config.get("num_feedforward_networks", 1)) * ffn
        layer += h * inner + h + 2 * h if bottleneck else 0
        total += int(config["num_hidden_layers"]) * layer
        if architecture != "MobileBertForMaskedLM" and config.get("classifier_activation", True):
            total += h * h + h
        labels = int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)
        mlm = h * h + h + 2 * h + v + (h - e) * v
        total += {"MobileBertForPreTraining": mlm + 2 * h + 2, "MobileBertForMaskedLM": mlm,
                  "MobileBertForNextSentencePrediction": 2 * h + 2,
                  "MobileBertForSequenceClassification": labels * h + labels}.get(architecture, 0)
        return {"embedding_size": e, "mlm_width": h, "family_parameters": total}


class MobileBertFamily(Family):
    name = "mobilebert"
    model_type = "mobilebert"
    architectures = {
        frozenset(): "MobileBertModel",
        frozenset({"mlm", "nsp"}): "MobileBertForPreTraining",
        frozenset({"mlm"}): "MobileBertForMaskedLM",
        frozenset({"nsp"}): "MobileBertForNextSentencePrediction",
        frozenset({"classifier"}): "MobileBertForSequenceClassification",
    }
    without_pooler = frozenset({"MobileBertForMaskedLM"})
    tied = {"cls.predictions.decoder.weight": "mobilebert.embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias"}
    pooler_weight = "mobilebert.pooler.dense.weight"
    config_file = "uncased_L-24_H-128_B-512_A-4_F-4_OPT.json"
    # the release names its config after the model (uncased_L-24_H-128_B-512_A-4_F-4_OPT.json)
    config_pattern = "*_L-*_H-*.json"
    task_heads = frozenset({"classifier"})
    runs_in_transformers = True
    config_keys = frozenset(GOOGLE_CONFIG_KEYS) | set(ORIGINAL_DEFAULTS)
    memory = MobileBertMemory()

    def translate_config(self, original: dict) -> dict:
        data = {**ORIGINAL_DEFAULTS, **original}
        if data["embedding_size"] is None:
            data["embedding_size"] = data.get("hidden_size")
        if data["intra_bottleneck_size"] is None:
            data["intra_bottleneck_size"] = data.get("hidden_size")
        if data["normalization_type"] == "layer_norm":
            raise ConfigError("normalization_type is layer_norm: transformers 5's MobileBert computes two of its "
                              "LayerNorms with epsilon 1e-5 whatever layer_norm_eps says, where the original uses "
                              "1e-12, so no stock MobileBert class computes this checkpoint",
                              hint="only no_norm MobileBERT checkpoints (the released OPT ones) are converted")
        return data

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import build_model
        return build_model(config, architecture, self.architecture_heads[architecture], with_pooler=with_pooler,
                           num_labels=num_labels)

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import mobilebert_reference_forward
        return mobilebert_reference_forward(weights, config, inputs, heads=heads)


FAMILY = MobileBertFamily([LAYOUT])
