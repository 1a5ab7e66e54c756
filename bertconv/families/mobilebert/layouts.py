"""google-research's MobileBERT TF1 names -> Hugging Face ``MobileBert*`` state-dict names.

MobileBERT's checkpoints keep BERT's scopes (``bert/embeddings``, ``bert/encoder/layer_N``) and add
what its structure has: ``embedding_transformation`` (the trigram or narrow word embeddings
mapped to the hidden width), each layer's ``bottleneck/input`` and, where the key and query
share it, ``bottleneck/attention``, the stacked feed-forward networks ``ffn_layer_J`` before the
last one, ``output/bottleneck`` back to the hidden width; its normalisations are ``FakeLayerNorm``
(``normalization_type: no_norm``, ``x * gamma + beta``) or ``LayerNorm``. Which of these a
checkpoint has depends on its config, so the table is bound to each checkpoint from its names
(:func:`bind`). The masked-LM head's ``extra_output_weights`` ([vocab, hidden - embedding]) are
the output columns beyond the word embeddings: Hugging Face's ``cls.predictions.dense.weight``,
transposed.
"""
from __future__ import annotations

import dataclasses
import re

from ...mapping import TRANSPOSE as T
from ...mapping import Mapping, Rule
from ..base import Layout
from ..bert.layouts.google import GOOGLE_ACTIVATIONS, GOOGLE_EXACT_ACTIVATIONS

L = "bert/encoder/layer_{layer}/"
P = "mobilebert.encoder.layer.{layer}."
NORMS = ("FakeLayerNorm", "LayerNorm")


def _dense(source: str, target: str, head: str | None = None) -> tuple[Rule, ...]:
    return (Rule(source + "/kernel", target + ".weight", (), T, head), Rule(source + "/bias", target + ".bias", (), None, head))


def _norm(source: str, target: str, norm: str) -> tuple[Rule, ...]:
    return (Rule(f"{source}/{norm}/gamma", target + ".weight"), Rule(f"{source}/{norm}/beta", target + ".bias"))


def rules(norm: str, *, transformation: bool, bottleneck: bool, shared_bottleneck: bool, ffn: int,
          pooler: bool, extra_output: bool) -> tuple[Rule, ...]:
    """The table of one MobileBERT structure. Rows state the shapes BertConfig's fields make;
    the bottleneck widths are not among them, and are checked by the model and the reference."""
    out = [Rule("bert/embeddings/word_embeddings", "mobilebert.embeddings.word_embeddings.weight",
                ("vocab_size", "embedding_size")),
           Rule("bert/embeddings/position_embeddings", "mobilebert.embeddings.position_embeddings.weight",
                ("max_position_embeddings", "hidden_size")),
           Rule("bert/embeddings/token_type_embeddings", "mobilebert.embeddings.token_type_embeddings.weight",
                ("type_vocab_size", "hidden_size")),
           *_norm("bert/embeddings", "mobilebert.embeddings.LayerNorm", norm)]
    if transformation:
        out += _dense("bert/embeddings/embedding_transformation", "mobilebert.embeddings.embedding_transformation")
    if bottleneck:
        out += [*_dense(L + "bottleneck/input/dense", P + "bottleneck.input.dense"),
                *_norm(L + "bottleneck/input", P + "bottleneck.input.LayerNorm", norm)]
    if shared_bottleneck:
        out += [*_dense(L + "bottleneck/attention/dense", P + "bottleneck.attention.dense"),
                *_norm(L + "bottleneck/attention", P + "bottleneck.attention.LayerNorm", norm)]
    for name in ("query", "key", "value"):
        out += _dense(L + f"attention/self/{name}", P + f"attention.self.{name}")
    out += [*_dense(L + "attention/output/dense", P + "attention.output.dense"),
            *_norm(L + "attention/output", P + "attention.output.LayerNorm", norm)]
    for j in range(ffn - 1):
        out += [*_dense(L + f"ffn_layer_{j}/intermediate/dense", P + f"ffn.{j}.intermediate.dense"),
                *_dense(L + f"ffn_layer_{j}/output/dense", P + f"ffn.{j}.output.dense"),
                *_norm(L + f"ffn_layer_{j}/output", P + f"ffn.{j}.output.LayerNorm", norm)]
    out += [*_dense(L + "intermediate/dense", P + "intermediate.dense"),
            *_dense(L + "output/dense", P + "output.dense"),
            *_norm(L + "output", P + "output.LayerNorm", norm)]
    if bottleneck:
        out += [*_dense(L + "output/bottleneck/dense", P + "output.bottleneck.dense"),
                *_norm(L + "output/bottleneck", P + "output.bottleneck.LayerNorm", norm)]
    if pooler:
        out += _dense("bert/pooler/dense", "mobilebert.pooler.dense", "pooler")
    # heads: run_pretraining.py's; the MLM transform's normalisation is a LayerNorm whatever the config says
    out += [*_dense("cls/predictions/transform/dense", "cls.predictions.transform.dense", "mlm"),
            Rule("cls/predictions/transform/LayerNorm/gamma", "cls.predictions.transform.LayerNorm.weight", (), None, "mlm"),
            Rule("cls/predictions/transform/LayerNorm/beta", "cls.predictions.transform.LayerNorm.bias", (), None, "mlm"),
            Rule("cls/predictions/output_bias", "cls.predictions.bias", (), None, "mlm")]
    if extra_output:
        out.append(Rule("cls/predictions/extra_output_weights", "cls.predictions.dense.weight", (), T, "mlm"))
    out += [Rule("cls/seq_relationship/output_weights", "cls.seq_relationship.weight", (2, "hidden_size"), None, "nsp"),
            Rule("cls/seq_relationship/output_bias", "cls.seq_relationship.bias", (2,), None, "nsp"),
            # run_classifier.py's, on the pooled output, already [labels, hidden]
            Rule("output_weights", "classifier.weight", ("num_labels", "hidden_size"), None, "classifier"),
            Rule("output_bias", "classifier.bias", ("num_labels",), None, "classifier")]
    return tuple(out)


def structure(names) -> dict:
    """What a checkpoint's names say of its structure."""
    names = set(names)
    ffn = {int(m.group(1)) for n in names for m in [re.search(r"layer_0/ffn_layer_(\d+)/", n)] if m}
    return {"norm": "FakeLayerNorm" if "bert/embeddings/FakeLayerNorm/gamma" in names else "LayerNorm",
            "transformation": "bert/embeddings/embedding_transformation/kernel" in names,
            "bottleneck": "bert/encoder/layer_0/bottleneck/input/dense/kernel" in names,
            "shared_bottleneck": "bert/encoder/layer_0/bottleneck/attention/dense/kernel" in names,
            "ffn": (max(ffn) + 2) if ffn else 1,
            "pooler": "bert/pooler/dense/kernel" in names,
            "extra_output": "cls/predictions/extra_output_weights" in names}


def config_structure(original: dict) -> dict:
    """What an original config (modeling.py's keys, every one stated) says of the structure: the
    same facts :func:`structure` reads from a checkpoint's names, as modeling.py and
    run_pretraining.py decide which variables to create."""
    hidden, embedding = int(original["hidden_size"]), int(original["embedding_size"])
    bottleneck = bool(original["use_bottleneck"])
    return {"norm": "FakeLayerNorm" if original["normalization_type"] == "no_norm" else "LayerNorm",
            "transformation": bool(original["trigram_input"]) or embedding != hidden,
            "bottleneck": bottleneck,
            # the attention's own bottleneck is read only where the inputs' is not
            "shared_bottleneck": bottleneck and bool(original["key_query_shared_bottleneck"])
            and not original["use_bottleneck_attention"],
            "ffn": int(original["num_feedforward_networks"]),
            "pooler": bool(original["classifier_activation"]),
            "extra_output": embedding != hidden}


#: the released OPT structure, and a pooler (run_classifier's fine-tunes with classifier_activation
#: have one): the table a checkpoint is read through before it is bound, and the one PyTorch
#: names are read back through
DEFAULT = {"norm": "FakeLayerNorm", "transformation": True, "bottleneck": True, "shared_bottleneck": True,
           "ffn": 4, "pooler": True, "extra_output": True}


#: why a layer_norm checkpoint's directory carries MobileBERT's own modeling code
LAYER_NORM_NOTE = ("normalization_type layer_norm: transformers 5's MobileBert builds the embeddings' LayerNorm and "
                   "each layer's output.LayerNorm with epsilon 1e-5 whatever layer_norm_eps says, where the original "
                   "uses 1e-12; the directory carries MobileBERT's own modeling code (model_type "
                   "mobilebert_layer_norm): load it with trust_remote_code=True")


def bind(layout: Layout, names: list[str], records=None) -> Layout:
    found = structure(names)
    said = (LAYER_NORM_NOTE,) if found["norm"] == "LayerNorm" else ()
    return dataclasses.replace(layout, mapping=Mapping(rules(**found)), bind=None, assumptions=said)


def bind_to_config(layout: Layout, original: dict) -> Layout:
    """The table of the structure ``original`` states: the way back reads it backwards (the
    PyTorch names do not say which normalisation a model has, and a model's names that its
    config's structure lacks are not the original's)."""
    return dataclasses.replace(layout, mapping=Mapping(rules(**config_structure(original))), bind=None)


#: names only MobileBERT's checkpoints and state dicts have, on either side (TF or PyTorch)
_OWN = re.compile(r"(^|[/.])(bottleneck|FakeLayerNorm|embedding_transformation|ffn_layer_\d+|ffn)[/.]|^mobilebert\.")


def recognise(names: list[str], records=None) -> bool:
    """Only names MobileBERT alone has: read backwards through this table, a plain BERT state
    dict's LayerNorm would otherwise pass for the released structure's FakeLayerNorm."""
    return any(_OWN.search(n) for n in names)


LAYOUT = Layout(
    name="google_mobilebert",
    description="google-research MobileBERT TF1 checkpoint",
    mapping=Mapping(rules(**DEFAULT)),
    # only MobileBERT has per-layer bottlenecks or FakeLayerNorm
    marker=re.compile(r"^bert/(encoder/layer_\d+/bottleneck/|embeddings/FakeLayerNorm/)"),
    faithful_activation=GOOGLE_ACTIVATIONS,
    exact_activation=GOOGLE_EXACT_ACTIVATIONS,
    bind=bind,
    recognise=recognise,
    canonical=True,
)
