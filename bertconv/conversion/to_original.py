"""``bertconv pt2tf``: a Hugging Face BERT (directory or ``.safetensors`` file) -> a checkpoint in
google-research/bert's own format (``bert_model.ckpt.*``, ``checkpoint``, ``bert_config.json``,
``vocab.txt``), written without TensorFlow, then read back and checked before it gets its name.

The plan (``plan.plan_back_conversion``) reads the family's canonical table backwards, strictly:
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

from ..atomic import atomic_dir, check_not_reading
from ..errors import CheckFailed, MappingError
from ..formats import open_source
from ..mapping import invert_transform
from .options import ConvertOptions, options_of
from .plan import BackPlan, TensorPlan, plan_back_conversion

#: bytes compared at a time by the check before publishing: no copy of a whole tensor is made
COMPARE_BLOCK_BYTES = 1 << 22
#: the options the way back reads
PT2TF_OPTIONS = frozenset({"overwrite", "validate", "allow_exact_gelu"})


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
    #: tensors read back from the written checkpoint and found equal to the source's, bit for bit
    #: (0 when the check was skipped)
    tensors_checked: int = 0

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
        if self.tensors_checked:
            lines.append(f"checked      {self.tensors_checked} tensors read back equal the source's, bit for bit")
        for note in self.notes:
            lines.append(f"note         {note}")
        return lines


def pt2tf(source: str | Path, output: str | Path, options: ConvertOptions | None = None,
          **overrides) -> Pt2TfReport:
    """Write ``output/`` as a google-research/bert checkpoint directory from a Hugging Face BERT.

    ``options`` is a :class:`ConvertOptions`, of which the way back reads ``overwrite``,
    ``validate`` (read the written checkpoint back and compare every tensor with the source's
    before publishing) and ``allow_exact_gelu``; they may also be given as keywords."""
    o = options_of(options, overrides, function="pt2tf", fields=PT2TF_OPTIONS)
    started = time.perf_counter()
    output = Path(output)
    with open_source(source) as src:
        plan = plan_back_conversion(src, source, allow_exact_gelu=o.allow_exact_gelu)
        family, notes = plan.family, plan.notes
        for alias in plan.aliases:
            original = family.tied[alias]
            original = original if original in src else original.removeprefix(family.encoder_prefix + ".")
            if original not in src:
                raise MappingError(f"{alias} duplicates {original}, which is missing", path=src.path)
            if not np.array_equal(np.asarray(src.read(alias)), np.asarray(src.read(original))):
                raise MappingError(f"{alias} differs from {original}: google-research/bert ties the MLM "
                                   "decoder to the word embeddings, so an untied decoder cannot be written",
                                   path=src.path)
        if plan.buffers:
            notes.append(f"ignored {len(plan.buffers)} index buffer(s) (not weights): {', '.join(plan.buffers)}")
        # a family without one (RoFormer-v2), or a structure the original builds none for, says nothing
        if "pooler" not in plan.parts and any(r.head == "pooler" for r in plan.layout.mapping.rules):
            notes.append("no pooler in the source: google-research/bert's BertModel always builds one, so "
                         "restoring this checkpoint there needs the pooler left out of the restore")
        widened = sorted({src.info(t.source).dtype for t in plan.tensors} - {"float32"})
        if widened:
            notes.append(f"{', '.join(widened)} weights widened to float32 (exactly), as Google's variables are")

        def tensors():
            for tensor in plan.tensors:
                yield tensor.target, _original_array(src, tensor)
                src.release(tensor.source)

        prefix, config_name = family.checkpoint_name, family.original_format.config_file
        files = [f"{prefix}.index", f"{prefix}.data-00000-of-00001", "checkpoint", config_name]
        check_not_reading(output, [p for p in (src.path, plan.config_path, src.sidecar("vocab.txt")) if p])
        checked = 0
        with atomic_dir(output, overwrite=o.overwrite, notes=notes) as tmp:
            from ..formats.tf_bundle_writer import write_tf_bundle

            write_tf_bundle(tmp / prefix, tensors())
            (tmp / "checkpoint").write_text(f'model_checkpoint_path: "{prefix}"\n'
                                            f'all_model_checkpoint_paths: "{prefix}"\n', encoding="utf-8")
            (tmp / config_name).write_text(json.dumps(plan.original_config, indent=2) + "\n", encoding="utf-8")
            vocab = src.sidecar("vocab.txt")
            # a SentencePiece family's model (BigBird's spiece.model), where there is no vocab.txt
            pieces = family.sentencepiece.find(src) if vocab is None and family.sentencepiece is not None else None
            if vocab is not None:
                shutil.copyfile(vocab, tmp / "vocab.txt")
                files.append("vocab.txt")
            elif pieces is not None:
                shutil.copyfile(pieces, tmp / pieces.name)
                files.append(pieces.name)
            elif family.original_format.vocabulary:
                notes.append("no vocab.txt beside the weights: none written")
            if o.validate:
                checked = _check_before_publishing(tmp / prefix, src, plan)

        parameters = sum(int(np.prod(t.target_shape)) for t in plan.tensors)
        heads = sorted(p for p in plan.parts if p != "pooler")
    return Pt2TfReport(source=str(source), output=str(output), architecture=plan.architecture, heads=heads,
                       tensors_written=len(plan.tensors), parameters=parameters,
                       hidden_act=plan.config.hidden_act, files=files,
                       aliases_checked=plan.aliases, buffers_ignored=plan.buffers, notes=notes,
                       seconds=time.perf_counter() - started, tensors_checked=checked)


def _original_array(src, tensor: TensorPlan) -> np.ndarray:
    """A source tensor as the original format stores it: float32, in the original's layout."""
    array = np.asarray(src.read(tensor.source))
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    # np.require, not ascontiguousarray, which turns a scalar (TAPAS' output_bias) 1-d
    return np.require(invert_transform(tensor.transform, array, tensor.target_shape), requirements="C")


def _check_before_publishing(prefix: Path, src, plan: BackPlan) -> int:
    """Read the written checkpoint back with bertconv's own reader (checksums verified) and
    compare every tensor with what the source says it must be, bit for bit: a checkpoint that
    does not hold the source's weights is never published. Returns the number compared."""
    problems = []
    with open_source(prefix, verify_crc=True) as written:
        expected = {t.target for t in plan.tensors}
        names = set(written.names())
        if names != expected:
            lost, added = sorted(expected - names), sorted(names - expected)
            problems.append(f"the written checkpoint lacks {', '.join(lost[:4]) or 'nothing'} and adds "
                            f"{', '.join(added[:4]) or 'nothing'}")
        for tensor in plan.tensors:
            if tensor.target not in names:
                continue
            want = _original_array(src, tensor)
            src.release(tensor.source)
            got = np.asarray(written.read(tensor.target))
            if got.dtype != want.dtype or got.shape != want.shape:
                problems.append(f"{tensor.target} reads back as {got.dtype} {list(got.shape)}, other than the "
                                f"source's {tensor.source} ({want.dtype} {list(want.shape)})")
            elif not _same_bytes(got, want):
                problems.append(f"{tensor.target} reads back with other values than the source's {tensor.source}")
            written.release(tensor.target)
    if problems:
        raise CheckFailed("the written checkpoint does not hold the source's weights ("
                          + "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "") + "); nothing was written",
                          path=src.path, hint="report it: the writer and the reader disagree")
    return len(plan.tensors)


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit (NaNs and signed zeros included), a block at a time."""
    a, b = np.ascontiguousarray(a).reshape(-1).view(np.uint8), np.ascontiguousarray(b).reshape(-1).view(np.uint8)
    return a.size == b.size and all(np.array_equal(a[i:i + COMPARE_BLOCK_BYTES], b[i:i + COMPARE_BLOCK_BYTES])
                                    for i in range(0, a.size, COMPARE_BLOCK_BYTES))
