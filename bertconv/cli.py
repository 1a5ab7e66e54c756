"""The ``bertconv`` command: a thin click layer over the Python API. Data goes to stdout (a table,
or ``--json``), progress and messages to stderr. Exit codes: 0 ok, 1 a check failed, 2 bad input."""
from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import sys
import warnings

import click

from . import __version__, model_card, model_process, progress
from .errors import BertconvError, Stopped
from .families import HEAD_CHOICES
from .inspection import SORT_KEYS
from .stopping import ignore_stopping_signals, stopping_on_signals


def _kernels_in_use() -> str:
    """Whether setup.py could build the compiled kernels here, and whether this CPU hashes in
    hardware (the extension imports without NumPy, so --version stays cheap)."""
    from .native import hardware_crc32c, kernels

    if kernels is None:
        return "NumPy (no C compiler at install)"
    if hardware_crc32c():
        return "compiled, CRC-32C in hardware"
    return "compiled transpose; CRC-32C by google-crc32c (no CRC instruction on this CPU)"


def _print_traceback() -> None:
    import traceback  # only with --debug or on a bug: its imports would weigh on every command's start

    traceback.print_exc()


def _set_debug(ctx, param, value):
    # main() gives each call a fresh record as click's ctx.obj: the flag never outlives its call
    if value and isinstance(ctx.obj, dict):
        ctx.obj["debug"] = True
    return value


# ------------------------------------------------------------------------------ shared options
# Each option is spelled, and explained, once: every command that has it takes it from here.

#: the dtypes bertconv writes and runs models in (conversion and validation check the same names;
#: not imported from them, which would load NumPy before every command)
DTYPES = ("float32", "float16", "bfloat16")


class _DtypeList(click.ParamType):
    """Comma-separated DTYPES, as a tuple."""

    name = "dtype[,dtype...]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        names = tuple(d.strip() for d in str(value).split(",") if d.strip())
        unknown = [d for d in names if d not in DTYPES]
        if unknown:
            self.fail(f"{', '.join(map(repr, unknown))} is not one of {', '.join(DTYPES)}", param, ctx)
        return names


debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                            help="Show the full traceback on errors.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
family_option = click.option("--family", help="Model family (default: detected).")
tower_option = click.option("--tower", metavar="NAME",
                            help="For checkpoints that hold several models (ELECTRA's discriminator and generator): "
                                 "which one (default: the one the converted model records, else the first).")
no_verify_crc_option = click.option("--no-verify-crc", is_flag=True,
                                    help="Skip the crc32c checks of the tensor data read.")
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
quiet_option = click.option("-q", "--quiet", is_flag=True,
                            help="Print nothing on success (no summary, no progress); a failure still prints its "
                                 "one line, and the exit code says which.")
keep_tokens_option = click.option(
    "--keep-tokens", type=click.Path(), metavar="FILE",
    help="A JSON list of the vocab.txt lines a pruned vocabulary kept, in row order (bert4keras' keep_tokens): "
         "the vocab.txt written holds those tokens.")
def _settings(ctx, param, value):
    from .settings import parse_settings
    return parse_settings(value)


#: ``--set key=value``, repeatable, on every command that reads a config (bertconv/settings.py)
set_option = click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", callback=_settings,
                          help="State a config fact the files lack or get wrong (repeatable); applied to the "
                               "original's config before it is translated.")
step_option = click.option("--step", type=click.IntRange(min=0), metavar="N",
                           help="A TensorFlow training directory's model.ckpt-N to read (default: the newest "
                                "there, or the one its checkpoint file names).")


def dtype_option(*, several: bool):
    """``--dtype``: one dtype, the one the weights are written in (tf2pt), or ``several``: the
    dtypes a converted model is run in, comma-separated (validate)."""
    if several:
        return click.option("--dtype", "dtypes", type=_DtypeList(), default="float32", show_default=True,
                            help="The dtypes to run the converted model in, comma-separated: "
                                 + ", ".join(DTYPES) + ".")
    return click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
                        help="The dtype to write the weights in.")


def atol_option(*, per: str, default: float | None):
    """``--atol``: the max abs difference allowed per output (validate, where by default each dtype
    has its own) or per tensor (diff, where by default none is)."""
    return click.option("--atol", type=float, default=default,
                        show_default="per dtype" if default is None else True,
                        help=f"Allowed max abs difference per {per}.")


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


@contextlib.contextmanager
def _progress(*, quiet: bool = False, as_json: bool = False):
    """Progress on stderr for this command's long work when stderr is a terminal and neither -q
    nor --json was given; yields whether it is shown."""
    shown = progress.wanted(quiet=quiet, as_json=as_json)
    token = progress.enable(shown)
    try:
        yield shown
    finally:
        progress.reset(token)


#: what third-party libraries would print on their own, hushed unless --debug: TensorFlow's C++
#: log (absl, oneDNN, CUDA probing) and transformers' progress bars, advisories and load report.
#: Read by each library when it is imported, so they are set before any command imports one.
QUIET_LIBRARIES = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "TRANSFORMERS_VERBOSITY": "error",
                   "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


@contextlib.contextmanager
def _quiet_libraries(debug: bool):
    """QUIET_LIBRARIES for one call (a user's own settings win), the environment restored after,
    since :func:`main` also runs inside processes that go on (tests, scripts)."""
    if debug:
        yield
        return
    added = {k: v for k, v in QUIET_LIBRARIES.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextlib.contextmanager
def _command_recorded(args: list[str]):
    """The command line, for the model card of what it converts (:data:`model_card.command`)."""
    import shlex

    token = model_card.command.set(shlex.join(["bertconv", *map(str, args)]))
    try:
        yield
    finally:
        model_card.command.reset(token)


def _quiet_tensorflow_python() -> None:
    """TensorFlow's Python-side logging (its logger and absl's), which the environment does not
    reach; the logger is set up before TensorFlow is imported, absl's only if absl is installed."""
    import logging

    context = click.get_current_context(silent=True)
    if context is not None and isinstance(context.obj, dict) and context.obj.get("debug"):
        return
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging
    except ImportError:
        return
    absl.logging.set_verbosity(absl.logging.ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="bertconv",
                      message="%(prog)s, version %(version)s (kernels: " + _kernels_in_use() + ")")
@debug_option
def cli():
    """Convert TensorFlow BERT-family checkpoints to PyTorch, and prove the conversion.

    Shell completion (bash; zsh and fish alike, with zsh_source / fish_source):
    eval "$(_BERTCONV_COMPLETE=bash_source bertconv)"
    """


# ---------------------------------------------------------------------------------------- inspect
@cli.command(short_help="What a checkpoint holds: family, heads, config, tensors; --memory: will it fit.")
@click.argument("path", type=click.Path())
@click.option("--stats", is_flag=True, help="Add min, max, mean, std, NaN and Inf counts per tensor.")
@click.option("--filter", "pattern", metavar="GLOB", help="Only tensors whose name matches GLOB.")
@click.option("--tensors", "show_tensors", is_flag=True,
              help="List every tensor after the summary (implied by --stats, --filter and --sort).")
@click.option("--sort", type=click.Choice(SORT_KEYS),
              help="Order of the tensor list: by name (the default), by size or parameter count (largest first), "
                   "or by dtype.")
@family_option
@set_option
@step_option
@no_verify_crc_option
@click.option("--memory", is_flag=True,
              help="Instead: estimate the peak memory of one inference or training step, from the shapes.")
@click.option("--batch", metavar="B[,B...]", help="--memory: batch sizes, comma-separated (default 8).")
@click.option("--seq-len", metavar="S[,S...]",
              help="--memory: sequence lengths, comma-separated (default 128, or the model's positions if fewer).")
@click.option("--dtype", type=click.Choice(DTYPES),
              help="--memory: float32 (default), or float16 / bfloat16 as torch.autocast runs them.")
@click.option("--mode", type=click.Choice(["infer", "train"]), help="--memory: a forward (default) or a training step.")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd", "none"]),
              help="--memory: the training step's optimizer (default adamw).")
@click.option("--attention", type=click.Choice(["eager", "sdpa"]), help="--memory: default transformers' own, sdpa.")
@click.option("--device", type=click.Choice(["cuda", "cpu"]), help="--memory: whose code paths (default cuda).")
@click.option("--gpu", metavar="SIZE|NAME",
              help="--memory: a GPU's memory (16GB) or name (T4, A100-80GB...): does it fit, what batch does.")
@json_option
@debug_option
def inspect(path, stats, pattern, show_tensors, sort, family, settings, step, no_verify_crc, memory, as_json,
            **memory_options):
    """What a checkpoint (TF, safetensors, HF directory, .bin, .h5) holds: its format, family,
    heads and config first, then with --tensors every tensor and what it is."""
    memory_options = {k: v for k, v in memory_options.items() if v is not None}
    if memory or memory_options:
        if not memory:
            raise click.UsageError(f"--{next(iter(memory_options)).replace('_', '-')} goes with --memory")
        from .memory import estimate

        report = estimate(path, family=family, step=step, **memory_options)
        if as_json:
            _emit_json(report.to_dict())
        else:
            click.echo(report.render())
        return
    from .inspection import inspect_checkpoint

    with _progress(as_json=as_json):
        report = inspect_checkpoint(path, stats=stats, filter=pattern, sort=sort or "name", family=family,
                                    verify_crc=not no_verify_crc, step=step, settings=settings)
    if as_json:
        _emit_json(_clean_floats(report.to_dict()))
        return
    listed = show_tensors or stats or pattern is not None or sort is not None
    click.echo(report.render(stats=stats, tensors=listed))
    if not listed and report.tensors:
        click.echo(f"({len(report.tensors):,} tensors: --tensors lists them)")


# ----------------------------------------------------------------------------------------- tf2pt
@cli.command(short_help="Convert a TF checkpoint (or, with --all, a release) to PyTorch, and check it.")
@click.argument("source", type=click.Path())
@click.argument("output", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["hf", "safetensors"]),
              help="hf: a Hugging Face model directory; safetensors: one .safetensors file. Default: safetensors "
                   "when OUTPUT ends in .safetensors, else hf.")
@dtype_option(several=False)
@click.option("--head", type=click.Choice(HEAD_CHOICES),
              default="auto", show_default=True, help="Which head to export (auto: what the checkpoint has).")
@click.option("--labels", help="Comma-separated class names for a classifier head (fills id2label).")
@click.option("--cased/--uncased", "cased", default=None, help="Override the inferred do_lower_case.")
@click.option("--gelu", type=click.Choice(["faithful", "exact"]), default="faithful", show_default=True,
              help="faithful: the original's tanh GELU (hidden_act gelu_new); exact: erf GELU.")
@family_option
@click.option("--config", "config_path", type=click.Path(), help="bert_config.json (default: beside the checkpoint).")
@set_option
@click.option("--vocab", "vocab_path", type=click.Path(), help="vocab.txt (default: beside the checkpoint).")
@keep_tokens_option
@click.option("--allow-unknown", is_flag=True, help="Drop unrecognised tensors with a warning instead of failing.")
@tower_option
@overwrite_option
@click.option("--no-validate", is_flag=True, help="Skip the check of the output against the original.")
@click.option("--torch-hub", is_flag=True,
              help="Also write hubconf.py, so that torch.hub.load(DIR_OR_REPO, 'model') loads the directory "
                   "(entry points: model, tokenizer).")
@click.option("--all", "convert_all", is_flag=True,
              help="SOURCE is a release: convert every checkpoint under it into OUTPUT, mirroring its tree.")
@click.option("--all-steps", is_flag=True,
              help="With --all: every step of a training directory (model.ckpt-N), not only the newest.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), metavar="N",
              help="With --all: conversions at once, each in its own process (default: the CPU count).")
@step_option
@no_verify_crc_option
@quiet_option
@json_option
@debug_option
def tf2pt(source, output, fmt, dtype, head, labels, cased, gelu, family, config_path, settings, vocab_path, keep_tokens,
          allow_unknown, tower, overwrite, no_validate, torch_hub, convert_all, all_steps, jobs, step,
          no_verify_crc, quiet, as_json):
    """Convert a TensorFlow checkpoint to a Hugging Face directory or a .safetensors file, and check
    it against the original before it gets its name. With --all, every checkpoint under SOURCE."""
    options = dict(format=fmt, dtype=dtype, head=head,
                   labels=[s.strip() for s in labels.split(",")] if labels else None,
                   lower_case=None if cased is None else not cased, gelu=gelu, family=family,
                   config=config_path, vocab=vocab_path, allow_unknown=allow_unknown, overwrite=overwrite,
                   validate=not no_validate, verify_crc=not no_verify_crc, tower=tower,
                   keep_tokens=keep_tokens, torch_hub=torch_hub, settings=settings)
    if convert_all or all_steps or jobs is not None:
        if not convert_all:
            raise click.UsageError(f"{'--all-steps' if all_steps else '-j'} goes with --all")
        _tf2pt_all(source, output, options, all_steps=all_steps, jobs=jobs, step=step, quiet=quiet,
                   as_json=as_json)
        return
    if not no_validate:
        model_process.start_ahead()
    from .conversion import convert

    with _progress(quiet=quiet, as_json=as_json) as shown:
        report = convert(source, output, progress=shown, step=step, **options)
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
            click.echo(f"checked      {v.coverage_line()}")
        else:
            click.echo("validation   none: --no-validate, so nothing was checked against the original "
                       f"(bertconv validate {output} --against {source} checks it)")


def _tf2pt_all(source, output, options, *, all_steps, jobs, step, quiet, as_json):
    from .batch import convert_all

    if step is not None:
        raise click.UsageError("--step picks one checkpoint; --all converts every one (--all-steps: every step)")
    with _progress(quiet=quiet, as_json=as_json) as shown:
        report = convert_all(source, output, jobs=jobs, all_steps=all_steps, progress=shown, **options)
    if as_json:
        _emit_json(_clean_floats(report.to_dict()))
    elif not quiet or report.failed:
        click.echo(report.render(cli=True))
    report.raise_for_failure()

# ----------------------------------------------------------------------------------------- pt2tf
@cli.command(short_help="Convert a Hugging Face BERT back to a google-research/bert TF checkpoint.")
@click.argument("source", type=click.Path())
@click.argument("output", type=click.Path())
@click.option("--allow-exact-gelu", is_flag=True,
              help="Write a model whose hidden_act is the exact erf 'gelu' although Google's 'gelu' is the "
                   "tanh form (the TF model's outputs then differ slightly).")
@overwrite_option
@quiet_option
@json_option
@debug_option
def pt2tf(source, output, allow_exact_gelu, overwrite, quiet, as_json):
    """Convert a Hugging Face BERT (directory or .safetensors) to a google-research/bert checkpoint."""
    from .conversion import pt2tf as run_pt2tf

    with _progress(quiet=quiet, as_json=as_json), progress.activity("writing"):
        report = run_pt2tf(source, output, overwrite=overwrite, allow_exact_gelu=allow_exact_gelu)
    if as_json:
        _emit_json(report.to_dict())
    elif not quiet:
        for line in report.summary_lines():
            click.echo(line)


# -------------------------------------------------------------------------------------- validate
@cli.command(short_help="Run a converted model and compare every output with an independent reference.")
@click.argument("converted", type=click.Path())
@click.option("--against", type=click.Path(), help="The original TF checkpoint.")
@click.option("--golden", type=click.Path(), help="Validate against stored outputs (.npz) instead.")
@click.option("--save-golden", type=click.Path(), help="Store the inputs and reference outputs (.npz).")
@overwrite_option
@click.option("--reference", type=click.Choice(["numpy", "tf"]), default="numpy", show_default=True,
              help="numpy: bertconv's float64 forward pass over the TF names; tf: TensorFlow itself.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@dtype_option(several=True)
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True,
              help="Sequences in the generated input batch (the last one padded).")
@click.option("--seq-len", type=click.IntRange(min=1), default=16, show_default=True,
              help="Tokens per generated sequence.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated token ids.")
@click.option("--text", type=click.Path(), help="A file of lines to tokenize (a tab separates a pair).")
@atol_option(per="output", default=None)
@click.option("--with-transformers", is_flag=True,
              help="Run the converted model through transformers (pip install transformers) instead of "
                   "bertconv's own model.")
@set_option
@tower_option
@step_option
@no_verify_crc_option
@quiet_option
@json_option
@debug_option
def validate(converted, against, golden, save_golden, overwrite, reference, device, dtypes, batch, seq_len, seed,
             text, atol, with_transformers, settings, tower, step, no_verify_crc, quiet, as_json):
    """Run the converted model and compare every output with an independent reference."""
    model_process.start_ahead()
    from .validation import validate as run_validate

    if reference == "tf":
        _quiet_tensorflow_python()
    with _progress(quiet=quiet, as_json=as_json), progress.activity("validating"):
        report = run_validate(converted, against=against, golden=golden, reference=reference, device=device,
                              dtypes=dtypes, batch=batch, seq_len=seq_len, seed=seed, text=text, tolerance=atol,
                              with_transformers=with_transformers, save_golden=save_golden, tower=tower,
                              verify_crc=not no_verify_crc, overwrite=overwrite, step=step, settings=settings)
    if as_json:
        _emit_json(_clean_floats(report.to_dict()))
    elif not quiet:
        click.echo(report.render())
    report.raise_for_failure()


# ------------------------------------------------------------------------------------------ diff
@cli.command(short_help="Compare the weights of two checkpoints of any formats, mapping-aware.")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@atol_option(per="tensor", default=0.0)
@click.option("--rtol", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Allowed relative difference per element: |a - b| <= atol + rtol * |b|.")
@family_option
@tower_option
@step_option
@no_verify_crc_option
@json_option
@debug_option
def diff(a, b, atol, rtol, family, tower, step, no_verify_crc, as_json):
    """Compare the weights of two checkpoints of any supported formats (mapping-aware: a TF
    checkpoint against its conversion compares each tensor with its transposed counterpart)."""
    from .comparison import diff as run_diff

    with _progress(as_json=as_json), progress.activity("comparing"):
        report = run_diff(a, b, atol=atol, rtol=rtol, family=family, tower=tower, verify_crc=not no_verify_crc,
                          step=step)
    if as_json:
        _emit_json(_clean_floats(report.to_dict()))
    else:
        click.echo(report.render())
    report.raise_for_failure()


def main(argv=None) -> int:
    state = {"debug": False}  # this call's own: --debug sets it, the handlers below read it
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        with stopping_on_signals(), warnings.catch_warnings(), _quiet_libraries("--debug" in args), \
                _command_recorded(args):
            # NumPy's floating-point warnings in bertconv's own numerics (the NaN a damaged file
            # holds): the checks say what they mean, in their one line
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"bertconv\.")
            cli.main(args=args, prog_name="bertconv", standalone_mode=False, obj=state)
    except Stopped as e:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            click.echo(f"bertconv: {e}", err=True)
        return e.exit_code
    except BertconvError as e:
        if state["debug"]:
            _print_traceback()
        click.echo(f"bertconv: error: {e.render(cli=True)}", err=True)
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
        if state["debug"]:
            _print_traceback()
        click.echo(f"bertconv: unexpected error: {type(e).__name__}: {e} (run with --debug for the traceback)",
                   err=True)
        return 2
    return 0


def run() -> int:
    """The ``bertconv`` console script: :func:`main`, for a process that ends when it returns.

    Every output is closed by then, and the interpreter's exit would run one more garbage
    collection over every object still alive (torch's, after a model run) to free nothing the
    exit would not; freezing them first leaves it nothing to walk (docs/performance.md). Not in
    :func:`main`, which tests and scripts call in processes that go on. For the same reason torch's
    objects are frozen as soon as it is imported (:data:`bertconv.torch_import.freeze_after_import`),
    and a check runs its model in a process of its own that imports torch while this one works
    (:mod:`bertconv.model_process`): a process that goes on imports torch once and keeps it.
    """
    from . import torch_import

    torch_import.freeze_after_import = True
    model_process.enabled = True
    try:
        code = main()
    finally:
        model_process.discard_ahead()
    ignore_stopping_signals()  # the run is over and its exit code stands; only the exit is left
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(run())
