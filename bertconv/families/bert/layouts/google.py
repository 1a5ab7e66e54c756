"""The BERT family: google-research/bert TF1 names -> Hugging Face ``Bert*`` state-dict names.

Dense kernels are stored ``[in, out]`` and ``nn.Linear.weight`` is ``[out, in]``: those rows are
transposed. ``output_weights`` tensors are already ``[out, in]`` (modeling.py multiplies with
``transpose_b=True``), so they are copied as they are. The MLM decoder weight is the word
embedding matrix itself and has no row of its own.
"""
from __future__ import annotations

from .base import TRANSPOSE as T
from .base import Mapping, Rule

L = "bert/encoder/layer_{layer}/"
P = "bert.encoder.layer.{layer}."

RULES = (
    # source (TensorFlow)                                  target (PyTorch)                              transform  head
    Rule("bert/embeddings/word_embeddings",              "bert.embeddings.word_embeddings.weight"),
    Rule("bert/embeddings/position_embeddings",          "bert.embeddings.position_embeddings.weight"),
    Rule("bert/embeddings/token_type_embeddings",        "bert.embeddings.token_type_embeddings.weight"),
    Rule("bert/embeddings/LayerNorm/gamma",              "bert.embeddings.LayerNorm.weight"),
    Rule("bert/embeddings/LayerNorm/beta",               "bert.embeddings.LayerNorm.bias"),
    Rule(L + "attention/self/query/kernel",              P + "attention.self.query.weight",             T),
    Rule(L + "attention/self/query/bias",                P + "attention.self.query.bias"),
    Rule(L + "attention/self/key/kernel",                P + "attention.self.key.weight",               T),
    Rule(L + "attention/self/key/bias",                  P + "attention.self.key.bias"),
    Rule(L + "attention/self/value/kernel",              P + "attention.self.value.weight",             T),
    Rule(L + "attention/self/value/bias",                P + "attention.self.value.bias"),
    Rule(L + "attention/output/dense/kernel",            P + "attention.output.dense.weight",           T),
    Rule(L + "attention/output/dense/bias",              P + "attention.output.dense.bias"),
    Rule(L + "attention/output/LayerNorm/gamma",         P + "attention.output.LayerNorm.weight"),
    Rule(L + "attention/output/LayerNorm/beta",          P + "attention.output.LayerNorm.bias"),
    Rule(L + "intermediate/dense/kernel",                P + "intermediate.dense.weight",               T),
    Rule(L + "intermediate/dense/bias",                  P + "intermediate.dense.bias"),
    Rule(L + "output/dense/kernel",                      P + "output.dense.weight",                     T),
    Rule(L + "output/dense/bias",                        P + "output.dense.bias"),
    Rule(L + "output/LayerNorm/gamma",                   P + "output.LayerNorm.weight"),
    Rule(L + "output/LayerNorm/beta",                    P + "output.LayerNorm.bias"),
    Rule("bert/pooler/dense/kernel",                     "bert.pooler.dense.weight",                    T,    "pooler"),
    Rule("bert/pooler/dense/bias",                       "bert.pooler.dense.bias",                      None, "pooler"),
    # heads
    Rule("cls/predictions/transform/dense/kernel",       "cls.predictions.transform.dense.weight",      T,    "mlm"),
    Rule("cls/predictions/transform/dense/bias",         "cls.predictions.transform.dense.bias",        None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/gamma",    "cls.predictions.transform.LayerNorm.weight",  None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/beta",     "cls.predictions.transform.LayerNorm.bias",    None, "mlm"),
    Rule("cls/predictions/output_bias",                  "cls.predictions.bias",                        None, "mlm"),
    Rule("cls/seq_relationship/output_weights",          "cls.seq_relationship.weight",                 None, "nsp"),
    Rule("cls/seq_relationship/output_bias",             "cls.seq_relationship.bias",                   None, "nsp"),
    Rule("output_weights",                               "classifier.weight",                           None, "classifier"),
    Rule("output_bias",                                  "classifier.bias",                             None, "classifier"),
    Rule("cls/squad/output_weights",                     "qa_outputs.weight",                           None, "squad"),
    Rule("cls/squad/output_bias",                        "qa_outputs.bias",                             None, "squad"),
)

MAPPING = Mapping(RULES)


# Symbolic shapes of the source tensors: config field names, or literal sizes.
H, I, V = "hidden_size", "intermediate_size", "vocab_size"
SHAPES = {
    "bert/embeddings/word_embeddings":              (V, H),
    "bert/embeddings/position_embeddings":          ("max_position_embeddings", H),
    "bert/embeddings/token_type_embeddings":        ("type_vocab_size", H),
    "bert/embeddings/LayerNorm/gamma":              (H,),
    "bert/embeddings/LayerNorm/beta":               (H,),
    L + "attention/self/query/kernel":              (H, H),
    L + "attention/self/query/bias":                (H,),
    L + "attention/self/key/kernel":                (H, H),
    L + "attention/self/key/bias":                  (H,),
    L + "attention/self/value/kernel":              (H, H),
    L + "attention/self/value/bias":                (H,),
    L + "attention/output/dense/kernel":            (H, H),
    L + "attention/output/dense/bias":              (H,),
    L + "attention/output/LayerNorm/gamma":         (H,),
    L + "attention/output/LayerNorm/beta":          (H,),
    L + "intermediate/dense/kernel":                (H, I),
    L + "intermediate/dense/bias":                  (I,),
    L + "output/dense/kernel":                      (I, H),
    L + "output/dense/bias":                        (H,),
    L + "output/LayerNorm/gamma":                   (H,),
    L + "output/LayerNorm/beta":                    (H,),
    "bert/pooler/dense/kernel":                     (H, H),
    "bert/pooler/dense/bias":                       (H,),
    "cls/predictions/transform/dense/kernel":       (H, H),
    "cls/predictions/transform/dense/bias":         (H,),
    "cls/predictions/transform/LayerNorm/gamma":    (H,),
    "cls/predictions/transform/LayerNorm/beta":     (H,),
    "cls/predictions/output_bias":                  (V,),
    "cls/seq_relationship/output_weights":          (2, H),
    "cls/seq_relationship/output_bias":             (2,),
    "output_weights":                               ("num_labels", H),
    "output_bias":                                  ("num_labels",),
    "cls/squad/output_weights":                     (2, H),
    "cls/squad/output_bias":                        (2,),
}


def infer_sizes(shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Every config field the shapes determine (the head count is not among them)."""
    sizes, by_target = infer_sizes_through(MAPPING, shapes)
    classifier = by_target.get("classifier.weight")
    if classifier:  # run_classifier.py's output_weights is already [labels, hidden]
        sizes["num_labels"] = classifier[0]
    return sizes


def infer_sizes_through(mapping, shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, int], dict]:
    """The sizes read off each tensor's Hugging Face BERT target through ``mapping`` (BERT's own
    table, or one from another layout such as Garden or Keras), and the source shapes keyed by
    target. ``num_labels`` assumes a classifier kernel stored [hidden, labels]."""
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


def _family():
    import re

    from . import Family
    return Family(
        name="bert",
        model_type="bert",
        mapping=MAPPING,
        marker=re.compile(r"^bert/(embeddings|encoder/layer_\d+)/"),
        architectures={
            frozenset(): "BertModel",
            frozenset({"mlm", "nsp"}): "BertForPreTraining",
            frozenset({"mlm"}): "BertForMaskedLM",
            frozenset({"nsp"}): "BertForNextSentencePrediction",
            frozenset({"classifier"}): "BertForSequenceClassification",
            frozenset({"squad"}): "BertForQuestionAnswering",
        },
        # Hugging Face builds these without a pooler (add_pooling_layer=False)
        without_pooler=frozenset({"BertForMaskedLM", "BertForQuestionAnswering"}),
        faithful_activation={"gelu": "gelu_new", "gelu_new": "gelu_new", "relu": "relu",
                             "tanh": "tanh", "swish": "swish"},
        exact_activation={"gelu": "gelu", "gelu_new": "gelu"},
        shapes=SHAPES,
        infer_sizes=infer_sizes,
    )


FAMILY = _family()
