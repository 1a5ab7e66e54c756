"""The ``README.md`` every converted directory gets: a model card in the Hugging Face convention
(YAML front matter the Hub reads: ``library_name``, ``pipeline_tag``, ``tags``), saying what the
directory was converted from (each source file's name, size and SHA-256), by which bertconv and
command, how it was read (family, layout, heads, what was dropped, every note) and what the check
against the original found. The same facts are in the card as one JSON block, which
:func:`read_provenance` reads back (``inspect`` of a converted directory shows them).

No NumPy or torch here: the CLI imports this module for :data:`command` on every call.
"""
from __future__ import annotations

import contextvars
import hashlib
import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CARD_NAME = "README.md"
HUBCONF_NAME = "hubconf.py"
#: the fence that opens the card's machine-readable block
_PROVENANCE_FENCE = "```json bertconv-provenance"

#: the command line that is converting, as the user typed it (the CLI sets it); None from the API
command: contextvars.ContextVar[str | None] = contextvars.ContextVar("bertconv_command", default=None)

#: the Hub's pipeline tag for each kind of class bertconv writes (by the class name's ending)
_PIPELINE_TAGS = (("ForSequenceClassification", "text-classification"),
                  ("ForQuestionAnswering", "question-answering"),
                  ("ForTokenClassification", "token-classification"),
                  ("ForMaskedLM", "fill-mask"), ("ForPreTraining", "fill-mask"))


def pipeline_tag(architecture: str) -> str:
    for ending, tag in _PIPELINE_TAGS:
        if architecture.endswith(ending):
            return tag
    return "feature-extraction"


class SourceDigests:
    """The SHA-256 of each source file, computed on a thread of its own while the conversion
    reads and writes (hashlib releases the GIL over large buffers, and the files are the ones the
    conversion pages in: docs/performance.md measures what it adds). :meth:`result` waits."""

    _CHUNK = 8 << 20

    def __init__(self, files: Iterable[Path], *, expand_directories: bool = True, start: bool = True):
        self.files = _unique_files(files, expand_directories)
        self._digests: dict[Path, str] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bertconv-sha256", daemon=True)
        self._started = threading.Lock()
        if start:
            self.start()

    def start(self) -> None:
        """Begin hashing (once; :meth:`result` begins it where nothing else has)."""
        if self._started.acquire(blocking=False):
            self._thread.start()

    def _run(self) -> None:
        try:
            for path in self.files:
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(self._CHUNK):
                        digest.update(chunk)
                self._digests[path] = digest.hexdigest()
        except BaseException as error:  # handed to whoever waits for the result
            self._error = error

    def result(self) -> list[dict[str, Any]]:
        """``[{"file", "bytes", "sha256"}]`` in the order given."""
        self.start()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return [{"file": str(p), "bytes": p.stat().st_size, "sha256": self._digests[p]} for p in self.files]


def _unique_files(paths: Iterable[Path], expand_directories: bool) -> list[Path]:
    """Regular files, each once; a directory (a SavedModel) stands for the files under it, or
    (``expand_directories`` false: a TF checkpoint's, whose files are named one by one) for none."""
    seen: dict[Path, None] = {}
    for path in map(Path, paths):
        if path.is_dir() and expand_directories:
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                seen.setdefault(child, None)
        elif path.is_file():
            seen.setdefault(path, None)
    return list(seen)


def provenance(report, sources: list[dict[str, Any]], *, version: str, command_line: str | None,
               torch_hub: bool, num_attention_heads: int | None) -> dict[str, Any]:
    """What the card states, as data: from a ``ConversionReport`` (its validation included)."""
    validation = report.validation
    checked: dict[str, Any] | None = None
    if validation is not None:
        # the check ran over the open source, which the validation report calls "the given weights"
        reference = validation.reference.replace("the given weights", report.source)
        checked = {"passed": validation.passed, "reference": reference,
                   "inputs": validation.inputs,
                   "runs": [{"dtype": run.dtype, "device": run.device, "weights_dtype": run.weights_dtype,
                             "passed": run.passed,
                             "outputs": [{"name": o.name, "max_abs": o.max_abs, "bound": o.bound}
                                         for o in run.outputs]} for run in validation.runs]}
    # each file named inside the source's directory: a card says nothing of the machine it was made on
    sources = [dict(s, file=_shown_name(s["file"], report.source)) for s in sources]
    return {"bertconv_version": version, "command": command_line, "source": report.source,
            "source_files": sources, "family": report.family, "layout": report.layout,
            "architecture": report.architecture, "dtype": report.dtype, "parameters": report.parameters,
            "heads_found": report.heads_present, "heads_exported": report.heads,
            "num_attention_heads": num_attention_heads, "config_from": report.config_origin,
            "training_state_dropped": report.training_state_dropped,
            "heads_not_exported": len(report.heads_dropped), "unknown_dropped": report.unknown_dropped,
            "kept_but_ignored_by_class": report.ignored_by_class, "do_lower_case": report.do_lower_case,
            "notes": report.notes, "validation": checked, "torch_hub": torch_hub}


def _loader(architecture: str, directory: str, auto_map: dict[str, str] | None) -> str:
    """How transformers loads ``directory``: the class, or (where its config.json's ``auto_map``
    names the family's own modeling code for it) the auto class that reaches it through
    ``trust_remote_code``. The directory says, not the family: one family writes both kinds."""
    auto = next((a for a, target in (auto_map or {}).items()
                 if a != "AutoConfig" and target.rsplit(".", 1)[-1] == architecture), None)
    return f"{architecture}.from_pretrained({directory}" if auto is None else \
        f"{auto}.from_pretrained({directory}, trust_remote_code=True"


def auto_map_of(directory: Path) -> dict[str, str] | None:
    """The ``auto_map`` of the config.json written into ``directory``, if any."""
    try:
        config = json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    return auto_map if isinstance(auto_map, dict) else None


def render(facts: dict[str, Any], *, model_type: str, auto_map: dict[str, str] | None = None) -> str:
    """The card's text."""
    architecture = facts["architecture"]
    tags = ["bertconv", "converted-from-tensorflow", facts["family"], model_type]
    lines = ["---", "library_name: transformers", f"pipeline_tag: {pipeline_tag(architecture)}", "tags:"]
    lines += [f"- {_yaml_scalar(tag)}" for tag in dict.fromkeys(tags)]
    lines += ["---", "", f"# {architecture}, converted from TensorFlow", ""]
    command_line = facts["command"]
    load = _loader(architecture, '"path/to/this/directory"', auto_map)
    how = f"`{command_line}`" if command_line else "the Python API (`bertconv.convert`)"
    lines += [f"Converted by bertconv {facts['bertconv_version']} with {how}, from `{facts['source']}`. "
              "Load it with `transformers`:", "", "```python", "import transformers", "",
              f"model = transformers.{load})",
              "tokenizer = transformers.AutoTokenizer.from_pretrained(\"path/to/this/directory\")", "```", ""]
    if facts.get("torch_hub"):
        lines += ["or with PyTorch Hub (`hubconf.py`): `torch.hub.load(\"path/or/owner/repo\", \"model\")` "
                  "(`source=\"local\"` for a folder), and `\"tokenizer\"` alike.", ""]
    lines += ["## Source", "", "| file | bytes | SHA-256 |", "| --- | --- | --- |"]
    lines += [f"| `{s['file']}` | {s['bytes']:,} | `{s['sha256']}` |" for s in facts["source_files"]]
    dropped = facts["training_state_dropped"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()))
    heads = facts["num_attention_heads"]
    lines += ["", "## How it was read", "",
              f"- family `{facts['family']}`, layout `{facts['layout']}`; config from {facts['config_from']}",
              f"- class `{architecture}`, {facts['parameters']:,} parameters, {facts['dtype']}"
              + (f", {heads} attention heads" if heads else ""),
              f"- heads found: {', '.join(facts['heads_found']) or 'none'}; exported: "
              f"{', '.join(facts['heads_exported']) or 'none (base model)'}",
              f"- dropped: {sum(dropped.values())} training-state tensor(s)" + (f" ({kinds})" if kinds else "")
              + (f"; {facts['heads_not_exported']} tensor(s) of heads not exported" if facts["heads_not_exported"]
                 else "")
              + (f"; {len(facts['unknown_dropped'])} unknown tensor(s) (--allow-unknown): "
                 + ", ".join(f"`{n}`" for n in facts["unknown_dropped"]) if facts["unknown_dropped"] else "")]
    if facts["kept_but_ignored_by_class"]:
        lines.append(f"- kept although `{architecture}` ignores them: "
                     + ", ".join(f"`{n}`" for n in facts["kept_but_ignored_by_class"]))
    if facts["do_lower_case"] is not None:
        lines.append(f"- do_lower_case: {str(facts['do_lower_case']).lower()}")
    lines += ["", "Notes (what was assumed or decided):", ""]
    lines += [f"- {note}" for note in facts["notes"]] or ["- none"]
    lines += ["", "## Validation", ""]
    checked = facts["validation"]
    if checked is None:
        lines.append("Not checked: converted with `--no-validate`. "
                     "`bertconv validate THIS_DIRECTORY --against SOURCE` checks it.")
    else:
        inputs = ", ".join(f"{k} {v}" for k, v in checked["inputs"].items() if v is not None)
        lines += [f"{'Passed' if checked['passed'] else 'FAILED'} against {checked['reference']} ({inputs}).", ""]
        for run in checked["runs"]:
            lines += [f"{run['dtype']} on {run['device']} (weights {run['weights_dtype']}): "
                      f"{'passed' if run['passed'] else 'FAILED'}", "", "| output | max abs | bound |",
                      "| --- | --- | --- |"]
            lines += [f"| {o['name']} | {o['max_abs']:.2e} | {o['bound']:.1e} |" for o in run["outputs"]]
            lines.append("")
    lines += ["", "## Provenance (machine-readable)", "", _PROVENANCE_FENCE,
              json.dumps(facts, indent=2, default=_json_safe, allow_nan=False), "```", ""]
    return "\n".join(lines)


def source_directory(source: str | Path) -> Path:
    """The directory a source's files are named in: the source itself, or the one holding it."""
    return Path(source) if Path(source).is_dir() else Path(source).parent


def _shown_name(file: str, source: str) -> str:
    """A source file as the card names it: its path inside the source's directory where it is
    there (``variables/variables.index``), else its name."""
    base = source_directory(source)
    try:
        return Path(file).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return Path(file).name


def _json_safe(value):
    return str(value)


def _yaml_scalar(text: str) -> str:
    """A tag as YAML reads it back as the same string (quoted where it could read as something else)."""
    plain = text.replace("-", "").replace("_", "").isalnum() and not text[:1].isdigit()
    return text if plain else json.dumps(text)


def write_card(directory: Path, facts: dict[str, Any], *, model_type: str) -> str:
    """README.md into ``directory``; returns its name."""
    (directory / CARD_NAME).write_text(render(facts, model_type=model_type, auto_map=auto_map_of(directory)),
                                       encoding="utf-8")
    return CARD_NAME


def read_provenance(directory: str | Path) -> dict[str, Any] | None:
    """The facts a card written by bertconv states, or None where there is no such card."""
    path = Path(directory) / CARD_NAME
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    start = text.find(_PROVENANCE_FENCE + "\n")
    if start < 0:
        return None
    start += len(_PROVENANCE_FENCE) + 1
    end = text.find("\n```", start)
    try:
        data = json.loads(text[start:end])
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def describe(facts: dict[str, Any]) -> list[str]:
    """The provenance in a few lines, for ``inspect``."""
    sources = facts.get("source_files") or []
    files = ", ".join(f"{s['file']} ({s['bytes']:,} B, sha256 {s['sha256'][:12]}...)" for s in sources)
    lines = [f"converted by bertconv {facts.get('bertconv_version')} from {facts.get('source')}"
             + (f" ({facts.get('family')}, layout {facts.get('layout')})" if facts.get("family") else ""),
             f"command: {facts.get('command') or 'the Python API (bertconv.convert)'}"]
    if files:
        lines.append(f"source files: {files}")
    checked = facts.get("validation")
    if checked is None:
        lines.append("validation: none (converted with --no-validate)")
    else:
        for run in checked.get("runs", []):
            worst = max(run.get("outputs", []), key=lambda o: o["max_abs"], default=None)
            lines.append(f"validation: {run['dtype']} on {run['device']}: "
                         f"{'passed' if run['passed'] else 'FAILED'}"
                         + (f"; max abs {worst['max_abs']:.2e} ({worst['name']})" if worst else "")
                         + f", against {checked.get('reference')}")
    return lines


HUBCONF = '''"""PyTorch Hub entry points for the model in this directory (written by bertconv {version}).

    import torch
    model = torch.hub.load("owner/repo", "model")                          # a Git repository
    model = torch.hub.load("path/to/this/directory", "model", source="local")
    tokenizer = torch.hub.load("path/to/this/directory", "tokenizer", source="local")

Keyword arguments go to transformers' from_pretrained (dtype=..., and so on).
"""
import os

dependencies = ["torch", "transformers"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def model(**kwargs):
    """The converted {architecture}, with this directory's weights and config."""
    import transformers

    return transformers.{loader}


def tokenizer(**kwargs):
    """The tokenizer this directory holds."""
    import transformers

    return transformers.AutoTokenizer.from_pretrained(_HERE, **kwargs)
'''


def write_hubconf(directory: Path, *, architecture: str, version: str) -> str:
    """hubconf.py into ``directory``; returns its name."""
    if not architecture.isidentifier():
        raise ValueError(f"not a class name: {architecture!r}")
    loader = _loader(architecture, "_HERE", auto_map_of(directory)) + ", **kwargs)"
    (directory / HUBCONF_NAME).write_text(HUBCONF.format(architecture=architecture, version=version, loader=loader),
                                          encoding="utf-8")
    return HUBCONF_NAME
