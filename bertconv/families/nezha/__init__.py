"""The NEZHA family (huawei-noah's NEZHA-TensorFlow): BERT with functional relative positions
instead of a position table (``layouts.py``). transformers 5 has no NEZHA class, so a converted
directory carries NEZHA's own modeling code (``model.py``, written by
:mod:`bertconv.families.remote_code`) and loads with ``trust_remote_code=True``. The float64
reference is ``reference.py``; the tokenizer is BERT's WordPiece from ``vocab.txt``.
"""
from __future__ import annotations

from ..base import Family, MemoryStructure, OriginalFormat
from ..remote_code import RemoteCode
from .layouts import B4K_MLM_LAYER_NORM_EPS, BERT4KERAS, LAYOUTS, MAX_RELATIVE_POSITION

HEAD_TENSORS = {
    "mlm": ("cls/predictions/transform/dense/kernel", "cls/predictions/transform/dense/bias",
            "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/LayerNorm/beta",
            "cls/predictions/output_bias"),
    "nsp": ("cls/seq_relationship/output_weights", "cls/seq_relationship/output_bias"),
    "classifier": ("output_weights", "output_bias"),
}

ARCHITECTURES = {
    frozenset(): "NezhaModel",
    frozenset({"mlm", "nsp"}): "NezhaForPreTraining",
    frozenset({"mlm"}): "NezhaForMaskedLM",
    frozenset({"classifier"}): "NezhaForSequenceClassification",
}


class NezhaTFFormat(OriginalFormat):
    """The way back: NEZHA-TensorFlow's checkpoint and bert_config.json (Google's, plus the
    relative positions)."""

    checkpoint_name = "model.ckpt"
    config_file = "bert_config.json"

    def config(self, hf, config_path, *, allow_exact_gelu, notes):
        from ...errors import ConfigError
        from ..bert import GoogleBertFormat

        if hf.get("mlm_layer_norm_eps") not in (None, hf.get("layer_norm_eps", 1e-12)):
            raise ConfigError(f"mlm_layer_norm_eps is {hf['mlm_layer_norm_eps']}; NEZHA-TensorFlow has one LayerNorm "
                              "epsilon, 1e-12", path=config_path)
        config = GoogleBertFormat().config(hf, config_path, allow_exact_gelu=allow_exact_gelu, notes=notes)
        config.update(use_relative_position=True, max_relative_position=MAX_RELATIVE_POSITION)
        return {k: config[k] for k in sorted(config)}


class NezhaMemory(MemoryStructure):
    # relative positions are computed, not looked up: no position table
    def structure(self, config):
        return {"position_table": False}

    def replay_embeddings(self, replay):
        return replay.bert_embeddings(position_table=False)


class NezhaFamily(Family):
    name = "nezha"
    model_type = "nezha"
    architectures = ARCHITECTURES
    without_pooler = frozenset({"NezhaForMaskedLM"})
    tied = {"cls.predictions.decoder.weight": "nezha.embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias"}
    pooler_weight = "nezha.pooler.dense.weight"
    head_descriptions = {"mlm": "masked LM", "nsp": "next sentence", "classifier": "sequence classifier"}
    task_heads = frozenset({"classifier"})
    head_tensors = HEAD_TENSORS
    hf_config_fields = {"pad_token_id": 0, "max_relative_position": MAX_RELATIVE_POSITION,
                        "use_relative_position": True, "tie_word_embeddings": True}
    memory = NezhaMemory()
    original_format = NezhaTFFormat()
    remote_code = RemoteCode(
        name="nezha", prefix="Nezha", model_type="nezha", model_module="bertconv.families.nezha.model",
        classes={"NezhaModel": "Encoder", "NezhaForMaskedLM": "MaskedLM", "NezhaForPreTraining": "PreTraining",
                 "NezhaForSequenceClassification": "SequenceClassification"},
        heads={"NezhaModel": "", "NezhaForMaskedLM": "mlm", "NezhaForPreTraining": "mlm,nsp",
               "NezhaForSequenceClassification": "classifier"},
        auto={"AutoModel": "NezhaModel", "AutoModelForMaskedLM": "NezhaForMaskedLM",
              "AutoModelForPreTraining": "NezhaForPreTraining",
              "AutoModelForSequenceClassification": "NezhaForSequenceClassification"},
        config_fields={"vocab_size": 21128, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                       "intermediate_size": 3072, "hidden_act": "gelu_new", "type_vocab_size": 2,
                       "layer_norm_eps": 1e-12, "initializer_range": 0.02,
                       "max_relative_position": MAX_RELATIVE_POSITION, "mlm_layer_norm_eps": None,
                       "with_pooler": True},
        layout_fields={BERT4KERAS.name: {"mlm_layer_norm_eps": B4K_MLM_LAYER_NORM_EPS}},
        pooler_weight="nezha.pooler.dense.weight",
    )

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import ARCHITECTURES

        return self.own_model(ARCHITECTURES, architecture, config, with_pooler=with_pooler, num_labels=num_labels)

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import nezha_reference_forward
        return nezha_reference_forward(weights, config, inputs, heads=heads)


FAMILY = NezhaFamily(LAYOUTS)
