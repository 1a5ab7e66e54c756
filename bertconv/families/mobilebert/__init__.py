"""The MobileBERT family: Hugging Face ``MobileBert*`` models from google-research's MobileBERT
TF1 checkpoints (``mobilebert/``: bottlenecks, stacked feed-forward networks, ``no_norm``).

Its config file is named like the release (``uncased_L-24_H-128_B-512_A-4_F-4_OPT.json``); its keys
are BERT's plus MobileBERT's own, which transformers' MobileBertConfig names alike but defaults
otherwise, so every one is written out with the original code's default where the file leaves it
out. Checkpoints with ``normalization_type: layer_norm`` are not computed by any stock class:
transformers 5's MobileBert builds the embeddings' LayerNorm and each layer's ``output.LayerNorm``
with epsilon 1e-5 whatever ``layer_norm_eps`` says, where the original uses 1e-12
(docs/compatibility.md gives the measured miss). Their directories carry MobileBERT's own
modeling code instead (``model.py``, written by :mod:`bertconv.families.remote_code`, model_type
``mobilebert_layer_norm``), loaded with ``trust_remote_code=True``; ``no_norm`` checkpoints (the
released OPT ones) keep transformers' classes. The float64 reference is ``reference.py``; the
tokenizer is BERT's WordPiece. The way back (:class:`MobileBertFormat`) reads the layout's table
bound to the structure the Hugging Face config states.
"""
from __future__ import annotations

from ...errors import ConfigError
from ..base import Family, MemoryStructure, OriginalFormat
from ..bert import GOOGLE_CONFIG_KEYS, GoogleBertFormat
from ..remote_code import RemoteCode
from .layouts import LAYOUT, bind_to_config

#: the model_type of a directory carrying MobileBERT's own modeling code (layer_norm checkpoints):
#: transformers without trust_remote_code refuses it rather than run its MobileBert on it
LAYER_NORM_MODEL_TYPE = "mobilebert_layer_norm"

#: modeling.py's BertConfig defaults for MobileBERT's own keys (None: the hidden width)
ORIGINAL_DEFAULTS = {"embedding_size": None, "trigram_input": False, "use_bottleneck": False,
                     "intra_bottleneck_size": None, "use_bottleneck_attention": False,
                     "key_query_shared_bottleneck": False, "num_feedforward_networks": 1,
                     "normalization_type": "layer_norm", "classifier_activation": True}


#: transformers' MobileBertConfig's defaults for the same keys: what it reads where a config.json
#: of model_type mobilebert leaves one out
TRANSFORMERS_DEFAULTS = {"embedding_size": 128, "trigram_input": True, "use_bottleneck": True,
                         "intra_bottleneck_size": 128, "use_bottleneck_attention": False,
                         "key_query_shared_bottleneck": True, "num_feedforward_networks": 4,
                         "normalization_type": "no_norm", "classifier_activation": True}


class MobileBertFormat(OriginalFormat):
    """The way back: google-research's MobileBERT checkpoint (run_pretraining.py's and
    run_classifier.py's names, the variables of the structure the config states) and a config
    with every key modeling.py's BertConfig has, as its ``to_json_string`` writes them."""

    #: the releases' checkpoint prefix
    checkpoint_name = "mobilebert_variables.ckpt"
    # the run scripts read any name through --bert_config_file; this one is among those tf2pt looks for
    config_file = "bert_config.json"

    def config(self, hf, config_path, *, allow_exact_gelu, notes):
        # BERT's keys as google-research/bert's way back writes them: modeling.py's get_activation
        # and its LayerNorm epsilon (1e-12, in the MLM head whatever the normalisation) are BERT's
        google = GoogleBertFormat().config(hf, config_path, allow_exact_gelu=allow_exact_gelu, notes=notes)
        own_code = hf.get("model_type") == LAYER_NORM_MODEL_TYPE
        defaults = ORIGINAL_DEFAULTS if own_code else TRANSFORMERS_DEFAULTS
        data = {**google, **{k: hf[k] if hf.get(k) is not None else defaults[k] for k in ORIGINAL_DEFAULTS}}
        for key in ("embedding_size", "intra_bottleneck_size"):
            data[key] = int(data[key] if data[key] is not None else data["hidden_size"])
        if data["normalization_type"] not in ("no_norm", "layer_norm"):
            raise ConfigError(f"normalization_type is {data['normalization_type']!r}; MobileBERT's modeling.py "
                              "knows no_norm and layer_norm", path=config_path)
        return {k: data[k] for k in sorted(data)}

    def table(self, family, names, original):
        return bind_to_config(family.layouts[0], original)


class MobileBertMemory(MemoryStructure):
    def structure(self, config):
        """The embeddings' own width, and the parameters of the bottlenecked layers counted as
        they are (Hugging Face's classes build an ``embedding_transformation`` always, MobileBERT's
        own code for layer_norm checkpoints only where trigram or a narrower embedding uses it)."""
        h, i, v = int(config["hidden_size"]), int(config["intermediate_size"]), int(config["vocab_size"])
        e = int(config.get("embedding_size") or h)
        bottleneck = bool(config.get("use_bottleneck", False))
        inner = int(config.get("intra_bottleneck_size") or h) if bottleneck else h
        from_bottleneck = bool(config.get("use_bottleneck_attention", False))
        shared = bool(config.get("key_query_shared_bottleneck", False)) and not from_bottleneck
        architecture = (config.get("architectures") or ["MobileBertModel"])[0]
        norm = 2 * inner
        total = v * e + (int(config.get("max_position_embeddings", 512)) + int(config.get("type_vocab_size", 2))) * h
        trigram = bool(config.get("trigram_input", False))
        own_code = config.get("normalization_type") == "layer_norm"
        total += 2 * h
        if not own_code or trigram or e != h:
            total += (3 * e if trigram else e) * h + h
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
    original_format = MobileBertFormat()
    remote_code = RemoteCode(
        name="mobilebert", prefix="MobileBertLayerNorm", model_type=LAYER_NORM_MODEL_TYPE,
        model_module="bertconv.families.mobilebert.model",
        classes={"MobileBertModel": "Encoder", "MobileBertForPreTraining": "PreTraining",
                 "MobileBertForMaskedLM": "MaskedLM", "MobileBertForNextSentencePrediction": "NextSentencePrediction",
                 "MobileBertForSequenceClassification": "SequenceClassification"},
        heads={"MobileBertModel": "", "MobileBertForPreTraining": "mlm,nsp", "MobileBertForMaskedLM": "mlm",
               "MobileBertForNextSentencePrediction": "nsp", "MobileBertForSequenceClassification": "classifier"},
        auto={"AutoModel": "MobileBertModel", "AutoModelForPreTraining": "MobileBertForPreTraining",
              "AutoModelForMaskedLM": "MobileBertForMaskedLM",
              "AutoModelForNextSentencePrediction": "MobileBertForNextSentencePrediction",
              "AutoModelForSequenceClassification": "MobileBertForSequenceClassification"},
        # every one is written to config.json; the defaults are modeling.py's BertConfig's
        config_fields={"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                       "intermediate_size": 3072, "hidden_act": "gelu_new", "max_position_embeddings": 512,
                       "type_vocab_size": 16, "layer_norm_eps": 1e-12, "initializer_range": 0.02,
                       **ORIGINAL_DEFAULTS, "with_pooler": True},
        pooler_weight="mobilebert.pooler.dense.weight",
        # only layer_norm checkpoints: transformers' own MobileBert computes no_norm ones
        applies=lambda config: config.get("normalization_type") == "layer_norm",
        base_model_prefix="mobilebert",
    )

    def translate_config(self, original: dict) -> dict:
        data = {**ORIGINAL_DEFAULTS, **original}
        if data["embedding_size"] is None:
            data["embedding_size"] = data.get("hidden_size")
        if data["intra_bottleneck_size"] is None:
            data["intra_bottleneck_size"] = data.get("hidden_size")
        if data["normalization_type"] not in ("no_norm", "layer_norm"):
            raise ConfigError(f"normalization_type is {data['normalization_type']!r}; MobileBERT's modeling.py "
                              "knows no_norm and layer_norm", hint="correct it with --set normalization_type=...")
        return data

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from ..bert.model import activation
        from .model import ARCHITECTURES

        activation(config.hidden_act)  # an unknown one is bertconv's error, before the model's
        return self.own_model(ARCHITECTURES, architecture, config, with_pooler=with_pooler, num_labels=num_labels)

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import mobilebert_reference_forward
        return mobilebert_reference_forward(weights, config, inputs, heads=heads)


FAMILY = MobileBertFamily([LAYOUT])
