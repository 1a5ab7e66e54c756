"""The RoFormer-v2 family (ZhuiyiTechnology, bert4keras ``model='roformer_v2'``): RoFormer without
biases or norm parameters (``layouts.py``). transformers 5 has no RoFormer-v2 class, so a converted
directory carries RoFormer-v2's own modeling code (``model.py``, written by
:mod:`bertconv.families.remote_code`) and loads with ``trust_remote_code=True``.

Its masked-LM head has no weights (the token embeddings, tied): a directory of the encoder loads
as ``AutoModelForMaskedLM`` too, so the release converts to ``RoFormerV2Model`` and that head
comes with it. The float64 reference is ``reference.py``; the tokenizer is BERT's WordPiece.
"""
from __future__ import annotations

from ..base import Family, MemoryStructure, OriginalFormat
from ..remote_code import RemoteCode
from .layouts import LAYER_NORM_EPS, LAYOUTS

#: Hugging Face's activation names -> bert4keras' (its "gelu" is the exact erf form, as Hugging Face's)
BERT4KERAS_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "silu": "swish", "tanh": "tanh", "linear": "linear"}
#: the keys of the release's bert_config.json (what bert4keras' build_transformer_model reads)
RELEASE_CONFIG_KEYS = ("attention_probs_dropout_prob", "hidden_dropout_prob", "hidden_size", "initializer_range",
                       "intermediate_size", "max_position_embeddings", "num_attention_heads", "num_hidden_layers",
                       "type_vocab_size", "vocab_size")


class RoFormerV2Format(OriginalFormat):
    """The way back: the release's own format, a TF checkpoint of Google's names for the kernels and
    tables (what bert4keras' save_weights_as_checkpoint writes, and bert4keras loads with
    ``model='roformer_v2'``), and its bert_config.json."""

    checkpoint_name = "bert_model.ckpt"
    config_file = "bert_config.json"

    def config(self, hf, config_path, *, allow_exact_gelu, notes):
        from ...errors import ConfigError

        eps = hf.get("layer_norm_eps", LAYER_NORM_EPS)
        if eps != LAYER_NORM_EPS:
            raise ConfigError(f"layer_norm_eps is {eps}; bert4keras' RoFormer-v2 norm uses {LAYER_NORM_EPS} "
                              "(K.epsilon()) and its config has no key for another", path=config_path)
        act = hf.get("hidden_act", "relu")
        if act not in BERT4KERAS_ACTIVATIONS:
            raise ConfigError(f"hidden_act {act!r} has no counterpart in bert4keras "
                              f"(it knows {', '.join(BERT4KERAS_ACTIVATIONS)})", path=config_path)
        config = {k: hf[k] for k in RELEASE_CONFIG_KEYS if k in hf}
        config["hidden_act"] = BERT4KERAS_ACTIVATIONS[act]
        return {k: config[k] for k in sorted(config)}


class RoFormerV2Memory(MemoryStructure):
    # rotary positions: no position table (the estimate's layers are BERT's: it counts biases and
    # norm weights RoFormer-v2 does not have, a few thousandths of its parameters)
    def structure(self, config):
        return {"position_table": False}

    def replay_embeddings(self, replay):
        return replay.bert_embeddings(position_table=False)


class RoFormerV2Family(Family):
    name = "roformer_v2"
    model_type = "roformer_v2"
    architectures = {
        frozenset(): "RoFormerV2Model",
        frozenset({"classifier"}): "RoFormerV2ForSequenceClassification",
    }
    without_pooler = frozenset(architectures.values())
    tied = {}
    pooler_weight = None
    head_descriptions = {"classifier": "sequence classifier (first token)"}
    task_heads = frozenset({"classifier"})
    head_tensors = {"classifier": ("classifier/kernel", "classifier/bias")}
    hf_config_fields = {"pad_token_id": 0, "tie_word_embeddings": True}
    memory = RoFormerV2Memory()
    original_format = RoFormerV2Format()
    remote_code = RemoteCode(
        name="roformer_v2", prefix="RoFormerV2", model_type="roformer_v2",
        model_module="bertconv.families.roformer_v2.model",
        classes={"RoFormerV2Model": "Encoder", "RoFormerV2ForMaskedLM": "MaskedLM",
                 "RoFormerV2ForSequenceClassification": "SequenceClassification"},
        heads={"RoFormerV2Model": "", "RoFormerV2ForMaskedLM": "mlm",
               "RoFormerV2ForSequenceClassification": "classifier"},
        auto={"AutoModel": "RoFormerV2Model", "AutoModelForMaskedLM": "RoFormerV2ForMaskedLM",
              "AutoModelForSequenceClassification": "RoFormerV2ForSequenceClassification"},
        config_fields={"vocab_size": 12000, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                       "intermediate_size": 3072, "hidden_act": "relu", "type_vocab_size": 2,
                       "layer_norm_eps": LAYER_NORM_EPS, "initializer_range": 0.02, "with_pooler": False},
    )

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import ARCHITECTURES

        model = self.own_model(ARCHITECTURES, architecture, config, num_labels=num_labels)
        model.heads = model.heads or frozenset({"mlm"})
        return model

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import roformer_v2_reference_forward
        return roformer_v2_reference_forward(weights, config, inputs, heads=heads)


FAMILY = RoFormerV2Family(LAYOUTS)
