"""The BigBird family: Hugging Face ``BigBird*`` models from google-research/bigbird's checkpoints
(``bigbird/pretrain/run_pretraining.py``'s MLM and NSP heads). The config is the flags file the
scripts save (``pretrain.config``, a JSON of every flag); the tokenizer is the SentencePiece model
it names.

Only full attention is exported: what the original computes whenever ``max_encoder_length`` is at
most 512 or ``attention_type`` is ``original_full``. Its block-sparse attention draws each layer's
random blocks once, for ``max_encoder_length`` tokens, from ``np.random.seed(layer index)``;
transformers' class in ``eval()`` attends block 0 in place of every random block (and draws for
the input's own length in training); such configs are refused (:mod:`.layouts`).
"""
from __future__ import annotations

from ..base import Family, OriginalFormat, SentencePieceTokenizer
from .layouts import LAYOUT

HEAD_TENSORS = {
    "mlm": ("transform/kernel", "transform/bias", "transform/gamma", "transform/beta", "cls/predictions/output_bias"),
    "nsp": ("cls/seq_relationship/output_weights", "cls/seq_relationship/output_bias"),
}


class BigBirdSentencePiece(SentencePieceTokenizer):
    # the file pretrain.config's vocab_model_file names, as the releases ship gpt2.model / pegasus.model
    model_names = ("spiece.model", "gpt2.model", "pegasus.model")

    def write(self, directory, model, *, model_max_length):
        from .tokenizer import write_bigbird_tokenizer
        return write_bigbird_tokenizer(directory, model, model_max_length=model_max_length)


#: the model flags bigbird/core's BertModel reads (with ``scope``), as run_pretraining.py saves them
MODEL_FLAGS = ("attention_probs_dropout_prob", "attention_type", "block_size", "hidden_act", "hidden_dropout_prob",
               "hidden_size", "initializer_range", "intermediate_size", "max_encoder_length",
               "max_position_embeddings", "norm_type", "num_attention_heads", "num_hidden_layers", "num_rand_blocks",
               "rescale_embedding", "scope", "type_vocab_size", "use_bias", "use_gradient_checkpointing",
               "vocab_size")


class BigBirdFormat(OriginalFormat):
    """The way back: google-research/bigbird's checkpoint and the flags file run_pretraining.py
    saves (``pretrain.config``: its model flags), with full attention, which is what a converted
    model computes."""

    checkpoint_name = "model.ckpt"
    config_file = "pretrain.config"

    def config(self, hf, config_path, *, allow_exact_gelu, notes):
        from ...errors import ConfigError
        from ..bert import GoogleBertFormat

        attention = hf.get("attention_type", "block_sparse")
        if attention != "original_full":
            raise ConfigError(f"attention_type is {attention}: transformers' BigBird in eval() attends block 0 in "
                              "place of every random block, which bigbird/core never computes", path=config_path,
                              hint="pt2tf writes BigBird models with attention_type original_full")
        if hf.get("rescale_embeddings") or not hf.get("use_bias", True):
            raise ConfigError("rescale_embeddings true or use_bias false: bertconv writes only the BigBird models it "
                              "converts", path=config_path)
        google = GoogleBertFormat().config(hf, config_path, allow_exact_gelu=allow_exact_gelu, notes=notes)
        length = hf.get("max_encoder_length")
        if length is None:
            length = google["max_position_embeddings"]
            notes.append(f"max_encoder_length {length} (the position table's length): config.json does not say "
                         "the length the original ran at; with full attention any length computes the same")
        flags = {**google, "attention_type": "original_full", "block_size": hf.get("block_size", 64),
                 "num_rand_blocks": hf.get("num_random_blocks", 3), "rescale_embedding": False, "use_bias": True,
                 "norm_type": "postnorm", "scope": "bert", "use_gradient_checkpointing": False,
                 "max_encoder_length": length}
        return {k: flags[k] for k in sorted(flags) if k in MODEL_FLAGS}


class BigBirdFamily(Family):
    name = "bigbird"
    model_type = "big_bird"
    state_dict_prefix = "bert"
    architectures = {
        frozenset(): "BigBirdModel",
        frozenset({"mlm", "nsp"}): "BigBirdForPreTraining",
        frozenset({"mlm"}): "BigBirdForMaskedLM",
    }
    tied = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias"}
    pooler_weight = "bert.pooler.weight"
    config_file = "pretrain.config"
    config_files = ("pretrain.config", "classifier.config", "config.json")
    head_tensors = HEAD_TENSORS
    head_descriptions = {"mlm": "masked LM", "nsp": "next sentence",
                         "classifier": "sequence classifier (run_classifier.py's: not exported)"}
    task_heads = frozenset({"classifier"})
    # full attention always: the layout refuses the configs for which the original computes otherwise
    hf_config_fields = {"pad_token_id": 0, "attention_type": "original_full", "tie_word_embeddings": True}
    runs_in_transformers = True
    sentencepiece = BigBirdSentencePiece()
    original_format = BigBirdFormat()

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import build_model
        return build_model(config, architecture, self.architecture_heads[architecture], with_pooler=with_pooler)

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import bigbird_reference_forward
        return bigbird_reference_forward(weights, config, inputs, heads=heads)


FAMILY = BigBirdFamily([LAYOUT])
