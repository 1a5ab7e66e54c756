"""The ``bertconv`` command: a thin click layer over the Python API. Data goes to stdout (a table,
or ``--json``), progress and messages to stderr. Exit codes: 0 ok, 1 a check failed, 2 bad input."""
from __future__ import annotations

import gc
import json
import math
import sys

import click

from . import __version__
from .errors import BertconvError
from .families import HEAD_CHOICES


def _kernels_in_use() -> str:
    """Whether setup.py could build the compiled kernels here, and whether this CPU hashes in
    hardware (the extension imports in well under a millisecond, and without NumPy)."""
    from .native import hardware_crc32c, kernels

    if kernels is None:
        return "NumPy (no C compiler at install)"
    if hardware_crc32c():
        return "compiled, CRC-32C in hardware"
    return "compiled transpose; CRC-32C by google-crc32c (no CRC instruction on this CPU)"

_state = {"debug": False}


def _print_traceback() -> None:
    import traceback  # only with --debug or on a bug: its imports cost every command ~4 ms

    traceback.print_exc()


def _set_debug(ctx, param, value):
    if value:
        _state["debug"] = True
    return value


debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                            help="Show the full traceback on errors.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def _emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=_json_default, allow_nan=False))


def _json_default(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _clean_floats(data):
    """JSON has no NaN or Infinity: write them as null (counts say what was there)."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _clean_floats(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_clean_floats(v) for v in data]
    return data


def printable(name: str) -> str:
    """Tensor names come from files: escape control characters before they reach a terminal."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="bertconv",
                      message="%(prog)s, version %(version)s (kernels: " + _kernels_in_use() + ")")
@debug_option
def cli():
    """Convert TensorFlow BERT-family checkpoints to PyTorch, and prove the conversion."""


# ---------------------------------------------------------------------------------------- inspect
@cli.command()
@click.argument("path", type=click.Path())
@click.option("--stats", is_flag=True, help="Add min, max, mean, std, NaN and Inf counts per tensor.")
@click.option("--filter", "pattern", metavar="GLOB", help="Only tensors whose name matches GLOB.")
@click.option("--sort", type=click.Choice(["name", "size", "params", "dtype"]), default="name", show_default=True)
@click.option("--family", help="Model family (default: detected).")
@click.option("--no-verify-crc", is_flag=True, help="Skip crc32c checks of tensor data (with --stats).")
@json_option
@debug_option
def inspect(path, stats, pattern, sort, family, no_verify_crc, as_json):
    """List the tensors of a checkpoint (TF, safetensors, HF directory, .bin, .h5) and what they are."""
    from .inspection import inspect_checkpoint
    from tabulate import tabulate

    report = inspect_checkpoint(path, stats=stats, filter=pattern, sort=sort, family=family,
                                verify_crc=not no_verify_crc)
    if as_json:
        _emit_json(_clean_floats(report.to_dict()))
        return
    headers = ["name", "shape", "dtype", "params", "bytes", "kind"]
    rows = []
    for r in report.tensors:
        kind = r.category if not r.role else f"{r.category} ({r.role})" if r.category != "model" else r.category
        row = [printable(r.name), "[" + ", ".join(map(str, r.shape)) + "]", r.dtype, f"{r.params:,}",
               human_bytes(r.bytes), kind]
        if stats:
            s = r.stats or {}
            row += [_fmt(s.get("min")), _fmt(s.get("max")), _fmt(s.get("mean")), _fmt(s.get("std")),
                    s.get("nan", ""), s.get("inf", "")]
        rows.append(row)
    if stats:
        headers += ["min", "max", "mean", "std", "nan", "inf"]
    click.echo(tabulate(rows, headers=headers, disable_numparse=True))
    click.echo()
    click.echo(f"{report.path}: {report.format}, family {report.family or 'unknown'}"
               + (f", layout {report.layout}" if report.layout else "")
               + (f" ({'TensorFlow' if report.naming == 'tf' else 'PyTorch'} names)" if report.naming != "?" else ""))
    summary = [[c, f"{t['tensors']:,}", f"{t['params']:,}", human_bytes(t["bytes"])]
               for c, t in report.totals.items()]
    click.echo(tabulate(summary, headers=["", "tensors", "parameters", "bytes"], disable_numparse=True))
    if report.heads:
        desc = report.head_descriptions
        found = [h for h in desc if report.heads.get(h)]
        parts = [desc[h] + (f" ({report.heads.get('num_labels')} labels)" if h == "classifier" else "")
                 for h in found]
        click.echo(f"heads: {', '.join(parts) if parts else 'none'}")
    if report.global_step is not None:
        click.echo(f"global_step: {report.global_step:,}")
    if report.inferred_config:
        click.echo("config inferred from shapes: "
                   + ", ".join(f"{k}={v}" for k, v in report.inferred_config.items()))
    if report.config_file:
        click.echo(f"config file: {report.config_file}"
                   + ("" if report.config_problems else " (agrees with the weights)"))
    if report.vocab_file:
        click.echo(f"vocab: {report.vocab_file} ({report.vocab_size} tokens)")
    for p in report.config_problems:
        click.echo(f"problem: {p}")
    for n in report.notes:
        click.echo(f"note: {n}")


def _fmt(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.4g}"


# ----------------------------------------------------------------------------------------- tf2pt
@cli.command()
@click.argument("source", type=click.Path())
@click.argument("output", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["hf", "safetensors"]), default="hf", show_default=True,
              help="A Hugging Face model directory, or one .safetensors file.")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True)
@click.option("--head", type=click.Choice(HEAD_CHOICES),
              default="auto", show_default=True, help="Which head to export (auto: what the checkpoint has).")
@click.option("--labels", help="Comma-separated class names for a classifier head (fills id2label).")
@click.option("--cased/--uncased", "cased", default=None, help="Override the inferred do_lower_case.")
@click.option("--gelu", type=click.Choice(["faithful", "exact"]), default="faithful", show_default=True,
              help="faithful: the original's tanh GELU (hidden_act gelu_new); exact: erf GELU.")
@click.option("--family", help="Model family (default: detected).")
@click.option("--config", "config_path", type=click.Path(), help="bert_config.json (default: beside the checkpoint).")
@click.option("--vocab", "vocab_path", type=click.Path(), help="vocab.txt (default: beside the checkpoint).")
@click.option("--allow-unknown", is_flag=True, help="Drop unrecognised tensors with a warning instead of failing.")
@click.option("--tower", type=click.Choice(["discriminator", "generator"]),
              help="ELECTRA: which of the checkpoint's models (default: the discriminator).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--no-validate", is_flag=True, help="Skip the check of the output against the original.")
@click.option("--no-verify-crc", is_flag=True, help="Skip crc32c checks of the source data.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
@json_option
@debug_option
def tf2pt(source, output, fmt, dtype, head, labels, cased, gelu, family, config_path, vocab_path,
          allow_unknown, tower, overwrite, no_validate, no_verify_crc, quiet, as_json):
    """Convert a TensorFlow checkpoint to a Hugging Face directory or a .safetensors file."""
    from .conversion import convert

    report = convert(source, output, format=fmt, dtype=dtype, head=head,
                     labels=[s.strip() for s in labels.split(",")] if labels else None,
                     lower_case=None if cased is None else not cased, gelu=gelu, family=family,
                     config=config_path, vocab=vocab_path, allow_unknown=allow_unknown, overwrite=overwrite,
                     validate=not no_validate, verify_crc=not no_verify_crc,
                     progress=not quiet and not as_json and sys.stderr.isatty(), tower=tower)
    if as_json:
        _emit_json(_clean_floats(report.to_dict()))
        return
    if not quiet:
        for line in report.summary_lines():
            click.echo(line)
        if report.validation is not None:
            v = report.validation
            compared = sum(len(run.outputs) for run in v.runs)
            click.echo(f"validation   {v.summary_line()} ({compared} outputs compared with the float64 "
                       f"reference, {v.seconds:.2f} s)")


# ----------------------------------------------------------------------------------------- pt2tf
@cli.command()
@click.argument("source", type=click.Path())
@click.argument("output", type=click.Path())
@click.option("--allow-exact-gelu", is_flag=True,
              help="Write a model whose hidden_act is the exact erf 'gelu' although Google's 'gelu' is the "
                   "tanh form (the TF model's outputs then differ slightly).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("-q", "--quiet", is_flag=True, help="No summary.")
@json_option
@debug_option
def pt2tf(source, output, allow_exact_gelu, overwrite, quiet, as_json):
    """Convert a Hugging Face BERT (directory or .safetensors) to a google-research/bert checkpoint."""
    from .pt2tf import pt2tf as run_pt2tf

    report = run_pt2tf(source, output, overwrite=overwrite, allow_exact_gelu=allow_exact_gelu)
    if as_json:
        _emit_json(report.to_dict())
    elif not quiet:
        for line in report.summary_lines():
            click.echo(line)


# -------------------------------------------------------------------------------------- validate
@cli.command()
@click.argument("converted", type=click.Path())
@click.option("--against", type=click.Path(), help="The original TF checkpoint.")
@click.option("--golden", type=click.Path(), help="Validate against stored outputs (.npz) instead.")
@click.option("--save-golden", type=click.Path(), help="Store the inputs and reference outputs (.npz).")
@click.option("--reference", type=click.Choice(["numpy", "tf"]), default="numpy", show_default=True,
              help="numpy: bertconv's float64 forward pass over the TF names; tf: TensorFlow itself.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--dtype", "dtypes", default="float32", show_default=True,
              help="Comma-separated: float32, float16, bfloat16.")
@click.option("--batch", type=int, default=2, show_default=True)
@click.option("--seq-len", type=int, default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--text", type=click.Path(), help="A file of lines to tokenize (a tab separates a pair).")
@click.option("--atol", type=float, help="Tolerance on max abs difference (default: per dtype).")
@click.option("--with-transformers", is_flag=True, help="Run the converted model through transformers.")
@click.option("--tower", type=click.Choice(["discriminator", "generator"]),
              help="ELECTRA: which of the checkpoint's models (default: the discriminator).")
@json_option
@debug_option
def validate(converted, against, golden, save_golden, reference, device, dtypes, batch, seq_len, seed, text,
             atol, with_transformers, tower, as_json):
    """Run the converted model and compare every output with an independent reference."""
    from .validation import validate as run_validate

    report = run_validate(converted, against=against, golden=golden, reference=reference, device=device,
                          dtypes=tuple(d.strip() for d in dtypes.split(",") if d.strip()), batch=batch,
                          seq_len=seq_len, seed=seed, text=text, tolerance=atol,
                          with_transformers=with_transformers, save_golden=save_golden, tower=tower)
    if as_json:
        _emit_json(_clean_floats(report.to_dict()))
    else:
        click.echo(report.render())
    report.raise_for_failure()


# ------------------------------------------------------------------------------------------ diff
@cli.command()
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--atol", type=float, default=0.0, show_default=True, help="Allowed max abs difference per tensor.")
@click.option("--family", help="Model family (default: detected).")
@click.option("--tower", type=click.Choice(["discriminator", "generator"]),
              help="ELECTRA: which model of the checkpoint to compare (default: as the converted side records).")
@json_option
@debug_option
def diff(a, b, atol, family, tower, as_json):
    """Compare the weights of two checkpoints of any supported formats (mapping-aware)."""
    from .comparison import diff as run_diff

    report = run_diff(a, b, atol=atol, family=family, tower=tower)
    if as_json:
        _emit_json(_clean_floats(report.to_dict()))
    else:
        click.echo(report.render())
    report.raise_for_failure()


def main(argv=None) -> int:
    try:
        cli.main(args=argv, prog_name="bertconv", standalone_mode=False)
    except BertconvError as e:
        if _state["debug"]:
            _print_traceback()
        click.echo(f"bertconv: error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("bertconv: aborted", err=True)
        return 2
    except click.ClickException as e:
        e.show()
        return 2
    except KeyboardInterrupt:
        click.echo("bertconv: interrupted; nothing was written", err=True)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence before a user sees a traceback
        if _state["debug"]:
            _print_traceback()
        click.echo(f"bertconv: unexpected error: {type(e).__name__}: {e} (run with --debug for the traceback)",
                   err=True)
        return 2
    return 0


def run() -> int:
    """The ``bertconv`` console script: :func:`main`, for a process that ends when it returns.

    Every output is closed by then, and what the interpreter does at exit includes a garbage
    collection over every object still alive (torch's 160,000, after a model run) that frees
    nothing the exit would not: 0.3-0.6 s of a 4-5 s ``validate`` (measured). Freezing them
    first leaves that collection nothing to walk. Not in :func:`main`, which tests and scripts
    call in processes that go on. For the same reason torch's objects are frozen as soon as it is
    imported (:data:`bertconv.torch_import.freeze_after_import`).
    """
    from . import torch_import

    torch_import.freeze_after_import = True
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(run())
