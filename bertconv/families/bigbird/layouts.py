"""google-research/bigbird's TF1 names -> Hugging Face ``BigBird*`` state-dict names.

The encoder is named as google-research/bert names it, with two differences that come from how
bigbird/core builds its Keras layers: the embeddings' LayerNorm belongs to the encoder stack
(``bert/encoder/LayerNorm``; in a post-norm model it normalises the embeddings), and the masked-LM
transform of run_pretraining.py is created outside any scope (``transform/kernel``,
``transform/gamma``...), while its output bias sits under ``cls/predictions``. The classifier of
run_classifier.py is ``bert/classifier/{kernel,bias}``, a kernel stored ``[in, out]``.

Hugging Face's BigBird classes keep BERT's module names below ``bert.``, so the targets are BERT's.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ...errors import ConfigError
from ...mapping import TRANSPOSE as T
from ...mapping import Mapping, Rule
from ..base import Layout
from ..bert.layouts.google import GOOGLE_ACTIVATIONS, GOOGLE_EXACT_ACTIVATIONS
from ..bert.layouts.google import RULES as GOOGLE_RULES

L = "bert/encoder/layer_{layer}/"
P = "bert.encoder.layer.{layer}."
H, I, V = "hidden_size", "intermediate_size", "vocab_size"

RULES = (
    # source (TensorFlow)                         target (PyTorch)                                shape                        transform  head
    Rule("bert/embeddings/word_embeddings",      "bert.embeddings.word_embeddings.weight",       (V, H)),
    Rule("bert/embeddings/position_embeddings",  "bert.embeddings.position_embeddings.weight",   ("max_position_embeddings", H)),
    Rule("bert/embeddings/token_type_embeddings", "bert.embeddings.token_type_embeddings.weight", ("type_vocab_size", H)),
    Rule("bert/encoder/LayerNorm/gamma",         "bert.embeddings.LayerNorm.weight",             (H,)),
    Rule("bert/encoder/LayerNorm/beta",          "bert.embeddings.LayerNorm.bias",               (H,)),
    # each layer: Google BERT's rows, the same names on both sides
    *(rule for rule in GOOGLE_RULES if rule.source.startswith(L)),
    Rule("bert/pooler/dense/kernel",             "bert.pooler.weight",                           (H, H),                      T,    "pooler"),
    Rule("bert/pooler/dense/bias",               "bert.pooler.bias",                             (H,),                        None, "pooler"),
    # heads
    Rule("transform/kernel",                     "cls.predictions.transform.dense.weight",       (H, H),                      T,    "mlm"),
    Rule("transform/bias",                       "cls.predictions.transform.dense.bias",         (H,),                        None, "mlm"),
    Rule("transform/gamma",                      "cls.predictions.transform.LayerNorm.weight",   (H,),                        None, "mlm"),
    Rule("transform/beta",                       "cls.predictions.transform.LayerNorm.bias",     (H,),                        None, "mlm"),
    Rule("cls/predictions/output_bias",          "cls.predictions.bias",                         (V,),                        None, "mlm"),
    Rule("cls/seq_relationship/output_weights",  "cls.seq_relationship.weight",                  (2, H),                      None, "nsp"),
    Rule("cls/seq_relationship/output_bias",     "cls.seq_relationship.bias",                    (2,),                        None, "nsp"),
    Rule("bert/classifier/kernel",               "classifier.out_proj.weight",                   (H, "num_labels"),           T,    "classifier"),
    Rule("bert/classifier/bias",                 "classifier.out_proj.bias",                     ("num_labels",),             None, "classifier"),
)

MAPPING = Mapping(RULES)

#: the original's BertModel runs full attention whatever its config says up to this length
FULL_ATTENTION_UP_TO = 512

#: flags.py's defaults of the attention flags (a flags file saves every flag; these stand in for a
#: file that leaves one out)
ORIGINAL_DEFAULTS = {"attention_type": "block_sparse", "block_size": 16, "num_rand_blocks": 3}

#: pretrain.config / classifier.config keys -> BigBirdConfig's (the others are training flags)
CONFIG_KEYS = {"attention_type": "attention_type", "block_size": "block_size", "num_rand_blocks": "num_random_blocks",
               "rescale_embedding": "rescale_embeddings", "use_bias": "use_bias", "num_labels": "num_labels",
               "max_encoder_length": "max_encoder_length"}

#: heads that Hugging Face's BigBird classes compute otherwise than the original
REFUSED_HEADS = {
    "classifier": "run_classifier.py puts its kernel on the pooler's tanh output, while Hugging Face's "
                  "BigBirdForSequenceClassification puts a dense layer with the encoder's activation on the first "
                  "token, so no BigBirdConfig computes the original's classifier",
}


@dataclasses.dataclass(frozen=True, repr=False)
class BigBirdLayout(Layout):
    """The layout whose config is bigbird/core's flags file: a JSON of every flag
    (``flags.save``), whose model keys are translated here and the training flags dropped."""

    def read_config(self, path, stored, notes=None, *, prepare=None):
        from ...config import BertConfig, read_config_json

        data = read_config_json(path)
        if prepare is not None:  # --set, applied to the original's config before it is read
            data = prepare(data, Path(path))
        norm = data.get("norm_type", "postnorm")
        if norm != "postnorm":
            raise ConfigError(f"norm_type is {norm!r}: Hugging Face's BigBird classes are post-norm only, so "
                              "none computes this model", path=Path(path))
        if data.get("rescale_embedding", False):
            raise ConfigError("rescale_embedding is true: bertconv does not convert BigBird models that scale "
                              "their embeddings", path=Path(path))
        if not data.get("use_bias", True):
            raise ConfigError("use_bias is false: BigBird models without attention biases are not converted",
                              path=Path(path))
        attention = data.get("attention_type", ORIGINAL_DEFAULTS["attention_type"])
        length = data.get("max_encoder_length")
        if attention != "original_full":
            if isinstance(length, int) and length <= FULL_ATTENTION_UP_TO:
                if notes is not None:
                    notes.append(f"attention_type original_full: the config says {attention}, but with "
                                 f"max_encoder_length {length} (at most {FULL_ATTENTION_UP_TO}) the original's "
                                 "BertModel switches itself to full attention")
                attention = "original_full"
            elif attention != "block_sparse":
                raise ConfigError(f"attention_type is {attention!r} with max_encoder_length {length}: bertconv "
                                  "converts original_full and block_sparse BigBird models", path=Path(path))
            else:
                data = {**ORIGINAL_DEFAULTS, **data}
                _check_block_sparse(data, Path(path))
                if notes is not None:
                    notes.extend(block_sparse_notes(data))
        model = {k: data[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                      "intermediate_size", "max_position_embeddings", "type_vocab_size",
                                      "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
                                      "initializer_range") if k in data}
        extra = {target: data[source] for source, target in CONFIG_KEYS.items() if source in data}
        extra["attention_type"] = attention
        return BertConfig.from_dict({"layer_norm_eps": self.layer_norm_eps, **model, **extra}, path=Path(path))


def _check_block_sparse(data: dict, path: Path) -> None:
    """What the original's BertModel needs to build a block-sparse model: a whole number of
    blocks (it raises the length to one), a position table that long, and a random plan its
    attention layer can draw."""
    from .reference import random_blocks

    length, block, count = data["max_encoder_length"], data["block_size"], data["num_rand_blocks"]
    for key in ("max_encoder_length", "block_size", "num_rand_blocks", "num_attention_heads"):
        if not isinstance(data.get(key), int) or data[key] < 1:
            raise ConfigError(f"{key} is {data.get(key)!r}, not a positive integer", path=path)
    run_length = -(-length // block) * block
    if data.get("max_position_embeddings", 0) < run_length:
        raise ConfigError(f"max_position_embeddings {data.get('max_position_embeddings')} is shorter than the "
                          f"{run_length} tokens the original's block-sparse layers run at", path=path)
    try:
        random_blocks(run_length, block, count, 1, 0)
    except ValueError as error:
        raise ConfigError(f"max_encoder_length {length} with block_size {block} and num_rand_blocks "
                          f"{count}: the original's attention layer cannot draw its random blocks "
                          f"({error})", path=path) from None


def block_sparse_notes(data: dict) -> list[str]:
    length, block = data["max_encoder_length"], data["block_size"]
    run_length = -(-length // block) * block
    raised = "" if run_length == length else f" (raised to {run_length}, a whole number of blocks, as it does)"
    return [f"attention_type block_sparse: block_size {block}, num_rand_blocks {data['num_rand_blocks']}, each "
            f"layer's random blocks drawn as the original draws them for {length} tokens{raised} with "
            "np.random.seed(layer index); BigBird's own modeling code, loaded with trust_remote_code=True "
            "(transformers' BigBird in eval() attends block 0 in place of every random block)",
            f"inputs are padded with id 0 to max_encoder_length {length}, as the original's scripts pad every "
            "input (its layers run at that length only); a longer input is refused"]


#: a BigBird checkpoint's own names: its encoder's LayerNorm (TensorFlow side), Hugging Face's bare
#: linear pooler (PyTorch side; BERT's is ``pooler.dense``)
OWN_NAMES = re.compile(r"^(bert/encoder/LayerNorm/(gamma|beta)|(bert\.)?pooler\.(weight|bias))$")


def recognise(names, records) -> bool:
    """Below their prefixes BigBird's PyTorch names are BERT's, so PyTorch names are BigBird's only
    with its own pooler (a BigBird state dict without one reads as BERT, which computes the same)."""
    return any(OWN_NAMES.match(n) for n in names)


LAYOUT = BigBirdLayout(
    name="google_bigbird",
    description="google-research/bigbird TF1 checkpoint",
    mapping=MAPPING,
    # only bigbird/core puts a LayerNorm directly under the encoder's scope
    marker=re.compile(r"^bert/encoder/LayerNorm/(gamma|beta)$"),
    faithful_activation=GOOGLE_ACTIVATIONS,
    exact_activation=GOOGLE_EXACT_ACTIVATIONS,
    canonical=True,
    recognise=recognise,
    refused_heads=REFUSED_HEADS,
    assumptions=("the padding mask is input_ids > 0, as bigbird/core computes it: a token id 0 is padding",),
)
