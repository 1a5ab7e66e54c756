"""The BERT family: Hugging Face ``Bert*`` models from google-research/bert's checkpoints and from
the other libraries that wrote BERT (``layouts/``).

Everything BERT-specific that central modules need is stated by :class:`BertFamily`; its
PyTorch model (``model.py``), its float64 reference (``reference.py``, and ``tf_reference.py`` for
TensorFlow itself) load only when used; its tokenizer is the base's WordPiece from vocab.txt.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from ..base import Family, OriginalFormat
from .layouts import LAYOUTS

#: The tensors whose presence means the original holds a head, in Google's names (each head needs them all).
HEAD_TENSORS = {
    "mlm": ("cls/predictions/transform/dense/kernel", "cls/predictions/transform/dense/bias",
            "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/LayerNorm/beta",
            "cls/predictions/output_bias"),
    "nsp": ("cls/seq_relationship/output_weights", "cls/seq_relationship/output_bias"),
    "classifier": ("output_weights", "output_bias"),
    "squad": ("cls/squad/output_weights", "cls/squad/output_bias"),
}

GOOGLE_CONFIG_KEYS = ("attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob", "hidden_size",
                      "initializer_range", "intermediate_size", "max_position_embeddings",
                      "num_attention_heads", "num_hidden_layers", "type_vocab_size", "vocab_size")
#: Hugging Face activation name -> google-research/bert's (modeling.get_activation) for the same function
GOOGLE_ACTIVATION = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu", "tanh": "tanh",
                     "linear": "linear"}
#: google-research/bert hard-codes its LayerNorm epsilon
GOOGLE_LAYER_NORM_EPS = 1e-12


class GoogleBertFormat(OriginalFormat):
    """The way back: google-research/bert's checkpoint and bert_config.json."""

    checkpoint_name = "bert_model.ckpt"
    config_file = "bert_config.json"

    def config(self, hf: dict, config_path: Path, *, allow_exact_gelu: bool, notes: list[str]) -> dict:
        """A Hugging Face BERT config.json -> google-research/bert's bert_config.json."""
        from ...config import BertConfig

        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"position_embedding_type {hf['position_embedding_type']!r} has no counterpart in "
                              "google-research/bert (absolute positions only)", path=config_path)
        eps = hf.get("layer_norm_eps", GOOGLE_LAYER_NORM_EPS)
        if eps != GOOGLE_LAYER_NORM_EPS:
            raise ConfigError(f"layer_norm_eps is {eps}; google-research/bert's LayerNorm uses 1e-12 always",
                              path=config_path)
        act = hf.get("hidden_act", "gelu")
        if act == "gelu":
            if not allow_exact_gelu:
                raise ConfigError("hidden_act 'gelu' is Hugging Face's exact erf GELU; google-research/bert's "
                                  "'gelu' is the tanh approximation, so the TF model would compute something else",
                                  path=config_path,
                                  hint="pass --allow-exact-gelu to write it anyway (outputs differ by ~1e-3)")
            notes.append("hidden_act 'gelu' (exact erf) written as Google's 'gelu', which computes the tanh "
                         "approximation: the TF model's outputs differ slightly from this model's")
            google_act = "gelu"
        elif isinstance(act, str) and act in GOOGLE_ACTIVATION:
            google_act = GOOGLE_ACTIVATION[act]
        else:
            raise ConfigError(f"hidden_act {act!r} has no counterpart in google-research/bert "
                              f"(it knows gelu, relu, tanh, linear)", path=config_path)
        config = BertConfig.from_dict({**hf, "hidden_act": google_act}, path=config_path)
        out = {k: v for k, v in config.to_dict().items() if k in GOOGLE_CONFIG_KEYS}
        return {k: out[k] for k in sorted(out)}


class BertFamily(Family):
    name = "bert"
    model_type = "bert"
    architectures = {
        frozenset(): "BertModel",
        frozenset({"mlm", "nsp"}): "BertForPreTraining",
        frozenset({"mlm"}): "BertForMaskedLM",
        frozenset({"nsp"}): "BertForNextSentencePrediction",
        frozenset({"classifier"}): "BertForSequenceClassification",
        frozenset({"squad"}): "BertForQuestionAnswering",
    }
    # Hugging Face builds these without a pooler (add_pooling_layer=False)
    without_pooler = frozenset({"BertForMaskedLM", "BertForQuestionAnswering"})
    tied = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias"}
    pooler_weight = "bert.pooler.dense.weight"
    head_tensors = HEAD_TENSORS
    runs_in_transformers = True
    original_format = GoogleBertFormat()

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import build_model
        return build_model(config, architecture, num_labels=num_labels, with_pooler=with_pooler)

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        if kind == "tf":
            from .reference import _Weights
            from .tf_reference import tf_reference_forward

            get = _Weights(weights)
            return tf_reference_forward(get.stored, get.has, config, inputs)
        from .reference import reference_forward
        return reference_forward(weights, config, inputs, heads=heads)


FAMILY = BertFamily(LAYOUTS)
