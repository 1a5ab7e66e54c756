"""The TAPAS family: Hugging Face ``Tapas*`` models from google-research/tapas' TF1 checkpoints
(pretrained, and the table question-answering and TabFact classifier fine-tunes).

``bert_config.json`` is google-research/bert's with ``type_vocab_size`` a list of the seven
token-type tables' sizes (TapasConfig's ``type_vocab_sizes``). Two settings that change what the
model computes live in the run, not the files, and are taken from the original code's defaults
with a note (``--set`` states them): ``reset_position_index_per_cell`` (False in
run_task_main.py and tapas_pretraining_model.py; TapasConfig's own default is True) and the cell
selection ``temperature`` (1.0 in run_task_main.py; each task's hyper-parameters set their own).
The PyTorch model (``model.py``) and float64 reference (``reference.py``) load only when used; the
tokenizer files are BERT's WordPiece ones from ``vocab.txt``.
"""
from __future__ import annotations

import dataclasses

from ...errors import ConfigError
from ..base import Family, Layout, MemoryStructure
from ..bert import GOOGLE_CONFIG_KEYS, GoogleBertFormat
from .layouts import HEAD_TENSORS, LAYOUT, TOKEN_TYPES

#: what google-research/tapas' runs set and its files do not record: key -> (the code's default, where)
UNRECORDED = {
    "reset_position_index_per_cell": (False, "the default of google-research/tapas' run_task_main.py and "
                                             "tapas_pretraining_model.py"),
    "temperature": (1.0, "the default of google-research/tapas' run_task_main.py; each task's hyper-parameters "
                         "set their own, e.g. WTQ 0.0352513"),
}


def _bind(layout: Layout, names: list[str], records) -> Layout:
    """The layout with this checkpoint's aggregation head size (0: none) for config.json."""
    shape = records.stored_shape("output_weights_agg") if "output_weights_agg" in names else None
    return dataclasses.replace(layout, config_fields={"num_aggregation_labels": int(shape[0]) if shape else 0},
                               bind=None)


class TapasFormat(GoogleBertFormat):
    """The way back: google-research/tapas' checkpoint and bert_config.json (BERT's, with the
    seven token-type tables' sizes as its ``type_vocab_size`` list). The settings the files do not
    record are not written: a run states them."""

    def config(self, hf, config_path, *, allow_exact_gelu, notes):
        sizes = hf.get("type_vocab_sizes")
        if not isinstance(sizes, list) or len(sizes) != TOKEN_TYPES:
            raise ConfigError(f"type_vocab_sizes is {sizes!r}, not {TOKEN_TYPES} sizes", path=config_path)
        config = super().config({**hf, "type_vocab_size": sizes[0]}, config_path, allow_exact_gelu=allow_exact_gelu,
                                notes=notes)
        for key in UNRECORDED:
            if key in hf:
                notes.append(f"{key}={hf[key]!r} is not written (google-research/tapas takes it from its run's flags)")
        return {**config, "type_vocab_size": list(sizes)}


class TapasMemory(MemoryStructure):
    def structure(self, config):
        """BERT's structure, with the seven token-type tables and the table heads counted."""
        h, i, v = int(config["hidden_size"]), int(config["intermediate_size"]), int(config["vocab_size"])
        architecture = (config.get("architectures") or ["TapasModel"])[0]
        sizes = config.get("type_vocab_sizes") or [int(config.get("type_vocab_size", 2))]
        layer = 4 * h * h + 4 * h + 2 * h + 2 * h * i + i + h + 2 * h
        total = (v + int(config.get("max_position_embeddings", 1024)) + sum(sizes)) * h + 2 * h
        total += int(config["num_hidden_layers"]) * layer
        total += 0 if architecture == "TapasForMaskedLM" else h * h + h
        labels = int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)
        total += {"TapasForMaskedLM": h * h + h + 2 * h + v,
                  "TapasForSequenceClassification": labels * h + labels,
                  "TapasForQuestionAnswering": 2 * h + 2 + int(config.get("num_aggregation_labels", 0)) * (h + 1),
                  }.get(architecture, 0)
        return {"family_parameters": total}


class TapasFamily(Family):
    name = "tapas"
    model_type = "tapas"
    architectures = {
        frozenset(): "TapasModel",
        frozenset({"mlm"}): "TapasForMaskedLM",
        frozenset({"table_qa"}): "TapasForQuestionAnswering",
        frozenset({"classifier"}): "TapasForSequenceClassification",
    }
    without_pooler = frozenset({"TapasForMaskedLM"})
    tied = {"cls.predictions.decoder.weight": "tapas.embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias"}
    pooler_weight = "tapas.pooler.dense.weight"
    head_tensors = {h: names for h, names in HEAD_TENSORS.items() if h != "nsp"}
    head_descriptions = {"mlm": "masked LM", "nsp": "next sentence (no Tapas class has one: not exported)",
                         "table_qa": "cell selection and aggregation", "classifier": "sequence classifier"}
    task_heads = frozenset({"table_qa", "classifier"})
    # tapas_classifier_model builds the cell-selection weights whatever the task (TabFact's too)
    heads_built_beside = {"classifier": frozenset({"table_qa"})}
    config_keys = frozenset(GOOGLE_CONFIG_KEYS) | {"softmax_temperature"}
    unrecorded_config = UNRECORDED
    original_format = TapasFormat()
    memory = TapasMemory()

    def translate_config(self, original: dict) -> dict:
        sizes = original.get("type_vocab_size")
        if isinstance(sizes, list):
            if len(sizes) != TOKEN_TYPES or not all(isinstance(s, int) and s > 0 for s in sizes):
                raise ConfigError(f"type_vocab_size lists {sizes!r}; TAPAS has {TOKEN_TYPES} token-type tables")
            # BertConfig's type_vocab_size is the segment table, TapasConfig's list all seven
            original = {**original, "type_vocab_size": sizes[0], "type_vocab_sizes": list(sizes)}
        temperature = original.get("softmax_temperature", 1.0)
        if temperature != 1.0:
            raise ConfigError(f"softmax_temperature is {temperature}: transformers' Tapas has no attention "
                              "temperature, so no converted model would compute this checkpoint's attention")
        return original

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import build_model
        return build_model(config, architecture, self.architecture_heads[architecture], num_labels=num_labels,
                           with_pooler=with_pooler)

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import tapas_reference_forward
        return tapas_reference_forward(weights, config, inputs, heads=heads)

    def validation_inputs(self, inputs, config):
        from .inputs import table_inputs
        return table_inputs(inputs, config)


FAMILY = TapasFamily([dataclasses.replace(LAYOUT, bind=_bind)])
