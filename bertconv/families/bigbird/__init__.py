"""The BigBird family: Hugging Face ``BigBird*`` models from google-research/bigbird's checkpoints
(``bigbird/pretrain/run_pretraining.py``'s MLM and NSP heads). The config is the flags file the
scripts save (``pretrain.config``, a JSON of every flag); the tokenizer is the SentencePiece model
it names.

Full attention (what the original computes whenever ``max_encoder_length`` is at most 512 or
``attention_type`` is ``original_full``) converts to transformers' own ``BigBird*`` classes.
Block-sparse models carry BigBird's own modeling code instead (``block_sparse.py``, written by
:mod:`bertconv.families.remote_code`, model_type ``big_bird_block_sparse``), loaded with
``trust_remote_code=True``: the original draws each layer's random blocks once, for
``max_encoder_length`` tokens, from ``np.random.seed(layer index)``, while transformers' class in
``eval()`` attends block 0 in place of every random block. The float64 reference is
``reference.py``.
"""
from __future__ import annotations

from ..base import Family, OriginalFormat, SentencePieceTokenizer
from ..remote_code import RemoteCode
from .layouts import LAYOUT

#: the model_type of a directory carrying BigBird's own block-sparse code: transformers without
#: trust_remote_code refuses it rather than run its BigBird on it
BLOCK_SPARSE_MODEL_TYPE = "big_bird_block_sparse"

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
    saves (``pretrain.config``: its model flags), with the attention the converted model computes:
    full for transformers' classes, block-sparse for a directory with BigBird's own code."""

    checkpoint_name = "model.ckpt"
    config_file = "pretrain.config"

    def config(self, hf, config_path, *, allow_exact_gelu, notes):
        from ...errors import ConfigError
        from ..bert import GoogleBertFormat

        attention = hf.get("attention_type", "block_sparse")
        own_code = hf.get("model_type") == BLOCK_SPARSE_MODEL_TYPE and attention == "block_sparse"
        if attention != "original_full" and not own_code:
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
        flags = {**google, "attention_type": attention, "block_size": hf.get("block_size", 64),
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
    # the attention type is the layout's: original_full wherever the original attends in full
    hf_config_fields = {"pad_token_id": 0, "tie_word_embeddings": True}
    runs_in_transformers = True
    remote_code = RemoteCode(
        name="bigbird_block_sparse", prefix="BigBirdBlockSparse", model_type=BLOCK_SPARSE_MODEL_TYPE,
        model_module="bertconv.families.bigbird.block_sparse",
        classes={"BigBirdModel": "Encoder", "BigBirdForPreTraining": "PreTraining", "BigBirdForMaskedLM": "MaskedLM"},
        heads={"BigBirdModel": "", "BigBirdForPreTraining": "mlm,nsp", "BigBirdForMaskedLM": "mlm"},
        auto={"AutoModel": "BigBirdModel", "AutoModelForPreTraining": "BigBirdForPreTraining",
              "AutoModelForMaskedLM": "BigBirdForMaskedLM"},
        # bigbird/core's flags.py defaults (its BERT-base sizes)
        config_fields={"vocab_size": 50358, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                       "intermediate_size": 3072, "hidden_act": "gelu_new", "max_position_embeddings": 4096,
                       "type_vocab_size": 2, "layer_norm_eps": 1e-12, "initializer_range": 0.02,
                       "attention_type": "block_sparse", "max_encoder_length": 4096, "block_size": 16,
                       "num_random_blocks": 3, "with_pooler": True},
        pooler_weight="bert.pooler.weight",
        # only block-sparse models: transformers' own BigBird computes full attention as the original
        applies=lambda config: config.get("attention_type") == "block_sparse",
        base_model_prefix="bert",
    )
    sentencepiece = BigBirdSentencePiece()
    original_format = BigBirdFormat()

    def validation_inputs(self, inputs, config):
        """A block-sparse model is checked at ``max_encoder_length`` tokens: its layers run at that
        length whatever the input's, and only tokens past the first blocks are read through
        random blocks. Each generated row goes on with seeded ids (row 0 to the end, the others
        to three quarters, then padding), its last segment continued."""
        if config.extra.get("attention_type") != "block_sparse":
            return inputs
        import numpy as np

        length = config.extra["max_encoder_length"]
        ids, types = inputs["input_ids"], inputs["token_type_ids"]
        if ids.shape[1] >= length:
            return inputs
        rng = np.random.default_rng(0)
        low = min(5, config.vocab_size - 1)
        longer = np.zeros((ids.shape[0], length), dtype=ids.dtype)
        segments = np.zeros_like(longer, dtype=types.dtype)
        for row in range(ids.shape[0]):
            kept = int((ids[row] > 0).sum())
            end = length if row == 0 else (3 * length) // 4
            longer[row, :kept], segments[row, :kept] = ids[row, :kept], types[row, :kept]
            longer[row, kept:end] = rng.integers(low, config.vocab_size, end - kept)
            segments[row, kept:end] = types[row, kept - 1] if kept else 0
        return {**inputs, "input_ids": longer, "token_type_ids": segments,
                "attention_mask": (longer > 0).astype(inputs["attention_mask"].dtype)}

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        if config.extra.get("attention_type") == "block_sparse":
            from ..bert.model import activation
            from .block_sparse import ARCHITECTURES

            activation(config.hidden_act)  # an unknown one is bertconv's error, before the model's
            return self.own_model(ARCHITECTURES, architecture, config, with_pooler=with_pooler,
                                  num_labels=num_labels)
        from .model import build_model
        return build_model(config, architecture, self.architecture_heads[architecture], with_pooler=with_pooler)

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import bigbird_reference_forward
        return bigbird_reference_forward(weights, config, inputs, heads=heads)


FAMILY = BigBirdFamily([LAYOUT])
