"""What a Hugging Face model directory holds besides the weights: config.json (the source config
translated, with the activation that computes what the original computed) and the tokenizer files
(the family's writer)."""
from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from .plan import Plan


def hf_config(plan: Plan, *, gelu: str, labels: list[str] | None, dtype: str) -> dict:
    """config.json: the source config, the class and type this conversion decided, and the
    activation named so that Hugging Face computes what the library that wrote the source did."""
    cfg = plan.config
    layout = plan.layout
    acts = layout.exact_activation if gelu == "exact" else layout.faithful_activation
    act = acts.get(cfg.hidden_act, cfg.hidden_act)
    # The source config's own keys first: what this conversion decides (class, type) wins.
    out = {k: v for k, v in cfg.to_dict().items() if k not in ("hidden_act", "architectures", "model_type")}
    out = {"architectures": [plan.architecture], "model_type": layout.model_type, **out}
    out["hidden_act"] = act
    extras = dict(plan.family.hf_config_extras(layout))
    tied = extras.pop("tie_word_embeddings", True)
    # the keys in the order every earlier conversion wrote them (outputs stay byte-identical)
    out.update({**extras, "dtype": dtype, "tie_word_embeddings": tied, "use_cache": False})
    if plan.num_labels is not None and "classifier" in plan.heads:
        names = labels or [f"LABEL_{i}" for i in range(plan.num_labels)]
        out["id2label"] = {str(i): n for i, n in enumerate(names)}
        out["label2id"] = {n: i for i, n in enumerate(names)}
    # The activation as the reference pass names it (a Hugging Face "gelu" is its "gelu_exact"),
    # so that validating against this config alone still computes what the original computed.
    out["bertconv"] = {"version": __version__,
                       "source_hidden_act": layout.reference_activation.get(cfg.hidden_act, cfg.hidden_act)}
    if layout.tower is not None:  # which of the checkpoint's models this is (ELECTRA)
        out["bertconv"]["tower"] = layout.tower
    return out


def target_names(plan: Plan) -> dict[str, str]:
    """Source name -> name in the written file. A bare encoder is saved without its model-type
    prefix, as Hugging Face saves it."""
    strip = not plan.heads and plan.architecture == plan.family.architectures[frozenset()]
    prefix = plan.family.encoder_prefix + "."
    return {t.source: (t.target[len(prefix):] if strip and t.target.startswith(prefix) else t.target)
            for t in plan.tensors}


def write_side_files(directory: Path, plan: Plan, config_json: dict,
                     lower_case: bool | None) -> tuple[list[str], bool | None, str | None]:
    """config.json and the tokenizer files of a Hugging Face directory: (files written,
    do_lower_case, a note saying how casing was decided, or None)."""
    remote = plan.family.remote_code  # the family's own modeling code, where transformers has none
    code = remote.write(directory, config_json, target_names(plan).values(), plan.layout.name) if remote else []
    (directory / "config.json").write_text(json.dumps(config_json, indent=2) + "\n", encoding="utf-8")
    written, do_lower, note = plan.family.write_tokenizer(directory, plan, lower_case)
    return ["config.json", *code, *written], do_lower, note
