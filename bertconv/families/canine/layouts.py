"""google-research/language's CANINE names (``language/canine/modeling.py``) -> the ``Canine*``
state-dict names (transformers' names, which bertconv's own CANINE model keeps).

The original builds these scopes, with Google BERT's layer names below them:

- ``char_embeddings/``: ``embeddings/HashBucketCodepointEmbedder_<k>`` (one table per hash
  function, ``[num_hash_buckets, hidden / num_hash_functions]``), ``segment_embeddings``,
  ``char_position_embeddings`` (``[max_positions, hidden]``), ``LayerNorm``;
- ``initial_char_encoder/layer_0/``: the local-attention layer over characters, and
  ``initial_char_encoder/initial_char_encoder/chars_to_molecules/`` (the strided ``conv`` and its
  ``LayerNorm``; the scope is entered twice, in ``__init__`` and in ``_chars_to_molecules``);
- ``bert/layer_<i>/``: the deep stack over molecules (no ``encoder`` scope in between);
- ``final_char_encoder/``: the upsampling ``conv`` and ``LayerNorm``, then ``layer_0/``;
- ``pooler/dense/``.

tydiqa/tydi_modeling.py's fine-tunes add ``cls/tydi/output_weights`` ``[2, hidden]`` (start and end,
already ``[out, in]``) and ``answer_type_output_weights`` ``[5, hidden]`` on the pooled output:
one head here, ``squad``. Convolution kernels are stored ``[width, in, out]``, ``nn.Conv1d``'s
``[out, in, width]``. Dense kernels are ``[in, out]`` (``dense_layer_3d`` stores the query, key
and value kernels flat): transposed.
"""
from __future__ import annotations

import dataclasses
import re

from ...formats.base import SourceRecords
from ...mapping import TRANSPOSE as T
from ...mapping import Mapping, Rule
from ...mapping.transforms import CONV1D_KERNEL as C
from ..base import Layout

H, I = "hidden_size", "intermediate_size"
#: the original supports up to this many hash functions (modeling.py's _PRIMES)
MAX_HASH_FUNCTIONS = 16
#: tydi_modeling.py's answer types (data.AnswerType: UNKNOWN, YES, NO, MINIMAL, PASSAGE)
ANSWER_TYPES = 5
HASH_TABLE = "char_embeddings/embeddings/HashBucketCodepointEmbedder_{}"


def _layer_rules(source: str, target: str, layer: str) -> tuple[Rule, ...]:
    """Google BERT's rows of one transformer layer under ``source``/``target`` prefixes."""
    s, t = f"{source}layer_{layer}/", f"{target}layer.{layer}."
    return (
        Rule(s + "attention/self/query/kernel",      t + "attention.self.query.weight",       (H, H), T),
        Rule(s + "attention/self/query/bias",        t + "attention.self.query.bias",         (H,)),
        Rule(s + "attention/self/key/kernel",        t + "attention.self.key.weight",         (H, H), T),
        Rule(s + "attention/self/key/bias",          t + "attention.self.key.bias",           (H,)),
        Rule(s + "attention/self/value/kernel",      t + "attention.self.value.weight",       (H, H), T),
        Rule(s + "attention/self/value/bias",        t + "attention.self.value.bias",         (H,)),
        Rule(s + "attention/output/dense/kernel",    t + "attention.output.dense.weight",     (H, H), T),
        Rule(s + "attention/output/dense/bias",      t + "attention.output.dense.bias",       (H,)),
        Rule(s + "attention/output/LayerNorm/gamma", t + "attention.output.LayerNorm.weight", (H,)),
        Rule(s + "attention/output/LayerNorm/beta",  t + "attention.output.LayerNorm.bias",   (H,)),
        Rule(s + "intermediate/dense/kernel",        t + "intermediate.dense.weight",         (H, I), T),
        Rule(s + "intermediate/dense/bias",          t + "intermediate.dense.bias",           (I,)),
        Rule(s + "output/dense/kernel",              t + "output.dense.weight",               (I, H), T),
        Rule(s + "output/dense/bias",                t + "output.dense.bias",                 (H,)),
        Rule(s + "output/LayerNorm/gamma",           t + "output.LayerNorm.weight",           (H,)),
        Rule(s + "output/LayerNorm/beta",            t + "output.LayerNorm.bias",             (H,)),
    )


DOWNSAMPLING = "initial_char_encoder/initial_char_encoder/chars_to_molecules/"
RULES = (
    tuple(Rule(HASH_TABLE.format(k), f"canine.char_embeddings.HashBucketCodepointEmbedder_{k}.weight")
          for k in range(MAX_HASH_FUNCTIONS))
    + (
        Rule("char_embeddings/segment_embeddings", "canine.char_embeddings.token_type_embeddings.weight",
             ("type_vocab_size", H)),
        Rule("char_embeddings/char_position_embeddings", "canine.char_embeddings.char_position_embeddings.weight",
             ("max_position_embeddings", H)),
        Rule("char_embeddings/LayerNorm/gamma", "canine.char_embeddings.LayerNorm.weight", (H,)),
        Rule("char_embeddings/LayerNorm/beta", "canine.char_embeddings.LayerNorm.bias", (H,)),
    )
    + _layer_rules("initial_char_encoder/", "canine.initial_char_encoder.", "0")
    + (
        Rule(DOWNSAMPLING + "conv/kernel", "canine.chars_to_molecules.conv.weight", (), C),
        Rule(DOWNSAMPLING + "conv/bias", "canine.chars_to_molecules.conv.bias", (H,)),
        Rule(DOWNSAMPLING + "LayerNorm/gamma", "canine.chars_to_molecules.LayerNorm.weight", (H,)),
        Rule(DOWNSAMPLING + "LayerNorm/beta", "canine.chars_to_molecules.LayerNorm.bias", (H,)),
    )
    + _layer_rules("bert/", "canine.encoder.", "{layer}")
    + (
        Rule("final_char_encoder/conv/kernel", "canine.projection.conv.weight", (), C),
        Rule("final_char_encoder/conv/bias", "canine.projection.conv.bias", (H,)),
        Rule("final_char_encoder/LayerNorm/gamma", "canine.projection.LayerNorm.weight", (H,)),
        Rule("final_char_encoder/LayerNorm/beta", "canine.projection.LayerNorm.bias", (H,)),
    )
    + _layer_rules("final_char_encoder/", "canine.final_char_encoder.", "0")
    + (
        Rule("pooler/dense/kernel", "canine.pooler.dense.weight", (H, H), T, "pooler"),
        Rule("pooler/dense/bias", "canine.pooler.dense.bias", (H,), None, "pooler"),
        # tydi_modeling.py's create_classification_model
        Rule("cls/tydi/output_weights", "qa_outputs.weight", (2, H), None, "squad"),
        Rule("cls/tydi/output_bias", "qa_outputs.bias", (2,), None, "squad"),
        Rule("answer_type_output_weights", "answer_type_outputs.weight", (ANSWER_TYPES, H), None, "squad"),
        Rule("answer_type_output_bias", "answer_type_outputs.bias", (ANSWER_TYPES,), None, "squad"),
    )
)
MAPPING = Mapping(RULES)

#: the span head and the answer-type head, as the reference reads them
HEAD_TENSORS = {"squad": ("cls/tydi/output_weights", "cls/tydi/output_bias", "answer_type_output_weights",
                          "answer_type_output_bias")}


def hash_tables(names) -> int:
    """How many hash tables a checkpoint holds (the original names them from 0 on)."""
    present = set(names)
    count = 0
    while count < MAX_HASH_FUNCTIONS and HASH_TABLE.format(count) in present:
        count += 1
    return count


#: the part of the released checkpoints' pretraining heads: CANINE-C's autoregressive character
#: decoder, CANINE-S's subword prediction (the scopes transformers' converter skipped); no released
#: code builds or computes them, so they are recognised and never exported
PRETRAINING = "pretraining"
_PRETRAINING_SCOPE = re.compile(r"^(cls/(?!tydi/)|autoregressive_decoder/|char_output_weights)")


def _bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The table with the hash-table rows this checkpoint holds (a table past the last is
    unknown, a missing one fails as missing against the config's num_hash_functions), and a row
    for each tensor of the pretraining heads it holds."""
    count = max(hash_tables(names), 1)
    extra = {HASH_TABLE.format(k) for k in range(count, MAX_HASH_FUNCTIONS)}
    present = set(names)
    # below another tensor's name is that tensor's optimizer slot (no weight is named below another)
    heads = tuple(Rule(n, "pretraining." + n.replace("/", "."), (), None, PRETRAINING) for n in sorted(names)
                  if _PRETRAINING_SCOPE.match(n) and not ("/" in n and n.rsplit("/", 1)[0] in present))
    mapping = Mapping(tuple(r for r in RULES if r.source not in extra) + heads)
    return dataclasses.replace(layout, mapping=mapping, bind=None, assumptions=NOTES)


def bind_to_config(layout: Layout, original: dict) -> Layout:
    """The table with the hash-table rows of ``original``'s num_hash_functions: the way back
    reads it backwards (a model holds no pretraining head: none is ever exported)."""
    extra = {HASH_TABLE.format(k) for k in range(int(original["num_hash_functions"]), MAX_HASH_FUNCTIONS)}
    return dataclasses.replace(layout, mapping=Mapping(tuple(r for r in RULES if r.source not in extra)), bind=None)


#: what every conversion says of the directory it writes
NOTES = ("CANINE's own modeling code, loaded with trust_remote_code=True: transformers' Canine* gives a local-"
         "attention window of padding only uniform weights (the original weighs its keys by their scores, "
         "-10000 added), which reaches the real characters before it through the upsampling convolution",
         "the character position table keeps the original's max_positions rows (transformers' Canine* sizes it "
         "by num_hash_buckets)")


#: bert_modeling.get_activation(): its "gelu" is the tanh approximation
ACTIVATIONS = {"gelu": "gelu_new", "gelu_new": "gelu_new", "relu": "relu", "tanh": "tanh", "linear": "linear"}
EXACT_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu"}

GOOGLE = Layout(
    name="google_canine",
    description="CANINE TF1 checkpoint (google-research/language language/canine; its TyDi QA fine-tunes)",
    mapping=MAPPING,
    marker=re.compile(r"^(char_embeddings/embeddings/HashBucketCodepointEmbedder_\d+|initial_char_encoder/layer_0/)"),
    faithful_activation=ACTIVATIONS,
    exact_activation=EXACT_ACTIVATIONS,
    # tf_slim's layer_norm, as bert_modeling.layer_norm calls it
    layer_norm_eps=1e-12,
    bind=_bind,
    canonical=True,
    pretraining_heads=frozenset(),
    # the heads count no shape holds: canine_config.json states it
    head_count_from_head_size=False,
)

LAYOUTS = (GOOGLE,)
