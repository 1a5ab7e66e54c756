"""google-research/bert's TF1 names -> Hugging Face ``Bert*`` state-dict names: Google's releases,
Chinese BERT-wwm and RoBERTa-wwm-ext, BioBERT, and fine-tunes made with Google's scripts.

Dense kernels are stored ``[in, out]`` and ``nn.Linear.weight`` is ``[out, in]``: those rows are
transposed. ``output_weights`` tensors are already ``[out, in]`` (modeling.py multiplies with
``transpose_b=True``), so they are copied as they are. The MLM decoder weight is the word
embedding matrix itself and has no row of its own. Shapes are symbolic: config field names.
"""
from __future__ import annotations

import re

from ....mapping import TRANSPOSE as T
from ....mapping import Mapping, Rule
from ...base import Layout

L = "bert/encoder/layer_{layer}/"
P = "bert.encoder.layer.{layer}."
H, I, V = "hidden_size", "intermediate_size", "vocab_size"

RULES = (
    # source (TensorFlow)                              target (PyTorch)                              shape                                transform  head
    Rule("bert/embeddings/word_embeddings",           "bert.embeddings.word_embeddings.weight",       (V, H)),
    Rule("bert/embeddings/position_embeddings",       "bert.embeddings.position_embeddings.weight",   ("max_position_embeddings", H)),
    Rule("bert/embeddings/token_type_embeddings",     "bert.embeddings.token_type_embeddings.weight", ("type_vocab_size", H)),
    Rule("bert/embeddings/LayerNorm/gamma",           "bert.embeddings.LayerNorm.weight",             (H,)),
    Rule("bert/embeddings/LayerNorm/beta",            "bert.embeddings.LayerNorm.bias",               (H,)),
    Rule(L + "attention/self/query/kernel",           P + "attention.self.query.weight",              (H, H),                              T),
    Rule(L + "attention/self/query/bias",             P + "attention.self.query.bias",                (H,)),
    Rule(L + "attention/self/key/kernel",             P + "attention.self.key.weight",                (H, H),                              T),
    Rule(L + "attention/self/key/bias",               P + "attention.self.key.bias",                  (H,)),
    Rule(L + "attention/self/value/kernel",           P + "attention.self.value.weight",              (H, H),                              T),
    Rule(L + "attention/self/value/bias",             P + "attention.self.value.bias",                (H,)),
    Rule(L + "attention/output/dense/kernel",         P + "attention.output.dense.weight",            (H, H),                              T),
    Rule(L + "attention/output/dense/bias",           P + "attention.output.dense.bias",              (H,)),
    Rule(L + "attention/output/LayerNorm/gamma",      P + "attention.output.LayerNorm.weight",        (H,)),
    Rule(L + "attention/output/LayerNorm/beta",       P + "attention.output.LayerNorm.bias",          (H,)),
    Rule(L + "intermediate/dense/kernel",             P + "intermediate.dense.weight",                (H, I),                              T),
    Rule(L + "intermediate/dense/bias",               P + "intermediate.dense.bias",                  (I,)),
    Rule(L + "output/dense/kernel",                   P + "output.dense.weight",                      (I, H),                              T),
    Rule(L + "output/dense/bias",                     P + "output.dense.bias",                        (H,)),
    Rule(L + "output/LayerNorm/gamma",                P + "output.LayerNorm.weight",                  (H,)),
    Rule(L + "output/LayerNorm/beta",                 P + "output.LayerNorm.bias",                    (H,)),
    Rule("bert/pooler/dense/kernel",                  "bert.pooler.dense.weight",                     (H, H),                              T,    "pooler"),
    Rule("bert/pooler/dense/bias",                    "bert.pooler.dense.bias",                       (H,),                                None, "pooler"),
    # heads
    Rule("cls/predictions/transform/dense/kernel",    "cls.predictions.transform.dense.weight",       (H, H),                              T,    "mlm"),
    Rule("cls/predictions/transform/dense/bias",      "cls.predictions.transform.dense.bias",         (H,),                                None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/gamma", "cls.predictions.transform.LayerNorm.weight",   (H,),                                None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/beta",  "cls.predictions.transform.LayerNorm.bias",     (H,),                                None, "mlm"),
    Rule("cls/predictions/output_bias",               "cls.predictions.bias",                         (V,),                                None, "mlm"),
    Rule("cls/seq_relationship/output_weights",       "cls.seq_relationship.weight",                  (2, H),                              None, "nsp"),
    Rule("cls/seq_relationship/output_bias",          "cls.seq_relationship.bias",                    (2,),                                None, "nsp"),
    Rule("output_weights",                            "classifier.weight",                            ("num_labels", H),                   None, "classifier"),
    Rule("output_bias",                               "classifier.bias",                              ("num_labels",),                     None, "classifier"),
    Rule("cls/squad/output_weights",                  "qa_outputs.weight",                            (2, H),                              None, "squad"),
    Rule("cls/squad/output_bias",                     "qa_outputs.bias",                              (2,),                                None, "squad"),
)

MAPPING = Mapping(RULES)


def infer_sizes(shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Every config field the shapes determine (the head count is not among them)."""
    sizes, by_target = infer_sizes_through(MAPPING, shapes)
    classifier = by_target.get("classifier.weight")
    if classifier:  # run_classifier.py's output_weights is already [labels, hidden]
        sizes["num_labels"] = classifier[0]
    return sizes


def infer_sizes_through(mapping: Mapping, shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, int], dict]:
    """The sizes read off each tensor's Hugging Face BERT target through ``mapping`` (this table,
    or another layout's), and the source shapes keyed by target. ``num_labels`` assumes a
    classifier kernel stored [hidden, labels]."""
    by_target, layers = {}, set()
    for name, shape in shapes.items():
        m = mapping.to_target(name)
        if m is not None:
            by_target[m.target] = tuple(shape)
            if m.layer is not None:
                layers.add(m.layer)

    def dim(target, axis):
        shape = by_target.get(target)
        return shape[axis] if shape is not None and len(shape) > axis else None

    sizes = {
        "vocab_size": dim("bert.embeddings.word_embeddings.weight", 0),
        "hidden_size": dim("bert.embeddings.word_embeddings.weight", 1),
        "max_position_embeddings": dim("bert.embeddings.position_embeddings.weight", 0),
        "type_vocab_size": dim("bert.embeddings.token_type_embeddings.weight", 0),
        # source kernels are [in, out]
        "intermediate_size": dim("bert.encoder.layer.0.intermediate.dense.weight", 1),
        "num_hidden_layers": (max(layers) + 1) if layers else None,
        "num_labels": dim("classifier.weight", 1),
    }
    return {k: v for k, v in sizes.items() if v is not None}, by_target


#: google-research/bert's get_activation(): its "gelu" is the tanh approximation
GOOGLE_ACTIVATIONS = {"gelu": "gelu_new", "gelu_new": "gelu_new", "relu": "relu", "tanh": "tanh", "swish": "swish"}
GOOGLE_EXACT_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu"}

LAYOUT = Layout(
    name="google_bert",
    description="google-research/bert TF1 checkpoint",
    mapping=MAPPING,
    # TF1 checkpoint keys never end in a Keras ":0" nor hold a TF2 object path: bert-for-tf2's
    # h5 (bert/encoder/layer_0/...:0) and Hugging Face's object checkpoints (bert/embeddings/
    # weight/.ATTRIBUTES/...) begin like Google's names and belong to their own layouts
    marker=re.compile(r"^bert/(embeddings|encoder/layer_\d+)/(?!.*(:\d+$|/\.ATTRIBUTES/))"),
    faithful_activation=GOOGLE_ACTIVATIONS,
    exact_activation=GOOGLE_EXACT_ACTIVATIONS,
    infer_sizes=infer_sizes,
    canonical=True,
)
