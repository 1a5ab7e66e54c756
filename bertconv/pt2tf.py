"""``bertconv pt2tf``: a Hugging Face BERT (directory or ``.safetensors`` file) -> a checkpoint in
google-research/bert's own format (``bert_model.ckpt.*``, ``checkpoint``, ``bert_config.json``,
``vocab.txt``), written without TensorFlow.

The BERT table is used in reverse (``MAPPING.to_source`` and ``invert_transform``), strictly:
every tensor must be a weight of the table, the tied duplicates Hugging Face may save
(``cls.predictions.decoder.weight``/``.bias``) must equal what they duplicate, and anything else is
an error, named. Values are copied bit for bit (float16/bfloat16 are widened to float32, exactly,
since Google's code builds float32 variables).

Activation: google-research/bert's ``"gelu"`` IS the tanh approximation, so Hugging Face's
``gelu_new`` / ``gelu_pytorch_tanh`` are written as ``"gelu"``. Hugging Face's ``"gelu"`` is the
exact erf GELU, which modeling.py cannot compute: that is an error unless ``allow_exact_gelu``,
which writes ``"gelu"`` and says in the report that the TF model will compute the tanh form
(a difference of about 1e-3 in the outputs of a BERT-base).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_dir, check_not_reading
from .config import BertConfig, compare_configs, read_config_json
from .errors import ConfigError, MappingError
from .families import default_family, family_for_model_type
from .formats import open_source
from .mapping import invert_transform



@dataclass
class Pt2TfReport:
    source: str
    output: str
    architecture: str | None
    heads: list[str]
    tensors_written: int
    parameters: int
    hidden_act: str
    files: list[str]
    aliases_checked: list[str] = field(default_factory=list)
    buffers_ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def summary_lines(self) -> list[str]:
        lines = [
            f"source       {self.source} ({self.architecture or 'architecture not stated'})",
            f"model        {self.tensors_written} tensors, {self.parameters:,} parameters, float32; "
            f"heads: {', '.join(self.heads) or 'none'}; hidden_act {self.hidden_act!r}",
            f"wrote        {self.output}: {', '.join(self.files)} in {self.seconds:.2f} s",
        ]
        if self.aliases_checked:
            lines.append(f"tied         {', '.join(self.aliases_checked)} equal what they duplicate (not written twice)")
        for note in self.notes:
            lines.append(f"note         {note}")
        return lines


def _hf_config(source, path: Path) -> tuple[dict, Path]:
    found = source.sidecar("config.json")
    embedded = getattr(source, "metadata", {}).get("bertconv.config")
    if found is None and embedded:
        # a single .safetensors file written by tf2pt carries its config in its metadata
        try:
            data = json.loads(embedded)
        except json.JSONDecodeError:
            raise ConfigError("the file's bertconv.config metadata is not JSON", path=path) from None
        if isinstance(data, dict):
            return data, path
    if found is None:
        raise ConfigError("no config.json beside the weights: the head count and activation are in no "
                          "tensor", path=path, hint="point at the Hugging Face model directory")
    return read_config_json(found), found


def pt2tf(source: str | Path, output: str | Path, *, overwrite: bool = False,
          allow_exact_gelu: bool = False) -> Pt2TfReport:
    """Write ``output/`` as a google-research/bert checkpoint directory from a Hugging Face BERT."""
    started = time.perf_counter()
    output = Path(output)
    notes: list[str] = []
    with open_source(source) as src:
        hf, config_path = _hf_config(src, Path(source))
        architecture = (hf.get("architectures") or [None])[0]
        family = family_for_model_type(hf.get("model_type")) if "model_type" in hf else default_family()
        if family is None:
            raise ConfigError(f"model_type is {hf.get('model_type')!r}, which bertconv does not know",
                              path=config_path, hint="pt2tf converts Hugging Face BERT models")
        google = family.to_original_config(hf, config_path, allow_exact_gelu=allow_exact_gelu, notes=notes)
        layout = family.layouts[0]
        mapping = layout.mapping

        # Map every name first; report every problem at once before any data is read.
        plan: dict[str, tuple[str, str | None]] = {}      # TF name -> (PT name, transform)
        aliases, buffers, unknown, problems = [], [], [], []
        for name in src.names():
            if family.index_buffers.match(name):
                buffers.append(name)
                continue
            if name in family.tied:
                aliases.append(name)
                continue
            match = mapping.to_source(name) or mapping.to_source(family.model_type + "." + name)
            if match is None:
                unknown.append(name)
                continue
            if match.source in plan:
                problems.append(f"{name} and {plan[match.source][0]} are the same weight ({match.source})")
                continue
            plan[match.source] = (name, match.rule.transform)
        if unknown:
            problems.append(f"{len(unknown)} tensor(s) are not {family.name.upper()} weights: " + ", ".join(unknown[:8])
                            + (" ..." if len(unknown) > 8 else ""))

        shapes = {}
        for tf_name, (pt_name, transform) in plan.items():
            info = src.info(pt_name)
            if not info.is_float:
                problems.append(f"{pt_name} has dtype {info.dtype}, not a floating-point weight")
            shapes[tf_name] = tuple(reversed(info.shape)) if transform else tuple(info.shape)
        config = BertConfig.from_dict(google, path=config_path)
        disagreements = compare_configs(config, {k: v for k, v in layout.infer_sizes(shapes).items()
                                                 if k != "num_labels"})
        if disagreements:
            problems.append("config.json contradicts the weights: " + "; ".join(disagreements))
        parts = frozenset(layout.parts_present(plan))
        expected = {m.source for m in mapping.expected(config.num_hidden_layers, parts)}
        missing = sorted(expected - set(plan))
        if missing:
            problems.append(f"missing {len(missing)} tensor(s): " + ", ".join(missing[:8])
                            + (" ..." if len(missing) > 8 else ""))
        extra = sorted(set(plan) - expected)
        if extra:
            problems.append(f"{len(extra)} tensor(s) beyond the config's {config.num_hidden_layers} layers: "
                            + ", ".join(extra[:8]))
        if problems:
            raise MappingError("; ".join(problems), path=src.path)

        for alias in aliases:
            original = family.tied[alias]
            original = original if original in src else original.removeprefix(family.model_type + ".")
            if original not in src:
                raise MappingError(f"{alias} duplicates {original}, which is missing", path=src.path)
            if not np.array_equal(np.asarray(src.read(alias)), np.asarray(src.read(original))):
                raise MappingError(f"{alias} differs from {original}: google-research/bert ties the MLM "
                                   "decoder to the word embeddings, so an untied decoder cannot be written",
                                   path=src.path)
        if buffers:
            notes.append(f"ignored {len(buffers)} index buffer(s) (not weights): {', '.join(buffers)}")
        if "pooler" not in parts:
            notes.append("no pooler in the source: google-research/bert's BertModel always builds one, so "
                         "restoring this checkpoint there needs the pooler left out of the restore")
        widened = sorted({src.info(pt).dtype for pt, _ in plan.values()} - {"float32"})
        if widened:
            notes.append(f"{', '.join(widened)} weights widened to float32 (exactly), as Google's variables are")

        order = sorted(plan)

        def tensors():
            for tf_name in order:
                pt_name, transform = plan[tf_name]
                array = np.asarray(src.read(pt_name))
                if array.dtype != np.float32:
                    array = array.astype(np.float32)
                yield tf_name, np.ascontiguousarray(invert_transform(transform, array))
                src.release(pt_name)

        prefix, config_name = family.checkpoint_name, family.original_format.config_file
        files = [f"{prefix}.index", f"{prefix}.data-00000-of-00001", "checkpoint", config_name]
        check_not_reading(Path(output), [p for p in (src.path, config_path, src.sidecar("vocab.txt")) if p])
        with atomic_dir(output, overwrite=overwrite) as tmp:
            from .formats.tf_bundle_writer import write_tf_bundle

            write_tf_bundle(tmp / prefix, tensors())
            (tmp / "checkpoint").write_text(f'model_checkpoint_path: "{prefix}"\n'
                                            f'all_model_checkpoint_paths: "{prefix}"\n', encoding="utf-8")
            (tmp / config_name).write_text(json.dumps(google, indent=2) + "\n", encoding="utf-8")
            vocab = src.sidecar("vocab.txt")
            if vocab is not None:
                shutil.copyfile(vocab, tmp / "vocab.txt")
                files.append("vocab.txt")
            else:
                notes.append("no vocab.txt beside the weights: none written")

        parameters = sum(int(np.prod(src.info(pt).shape)) for pt, _ in plan.values())
        heads = sorted(p for p in parts if p != "pooler")
    return Pt2TfReport(source=str(source), output=str(output), architecture=architecture, heads=heads,
                       tensors_written=len(plan), parameters=parameters, hidden_act=google["hidden_act"],
                       files=files, aliases_checked=sorted(aliases), buffers_ignored=sorted(buffers), notes=notes,
                       seconds=time.perf_counter() - started)
