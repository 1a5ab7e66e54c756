"""``bertconv validate``: run a converted model and compare every named output, in data-flow order,
with an independent reference computed from the original TensorFlow checkpoint.

References: ``numpy`` (the family's float64 reference over the original names, sharing no code
with the PyTorch model), ``tf`` (TensorFlow itself, float64) or a golden ``.npz`` of stored outputs
(no checkpoint or TensorFlow needed: the CI parity check). The parts: ``inputs.py`` (what both
passes run on), ``references.py`` (the original's outputs), ``runners.py`` (the converted model's),
``compare.py`` (statistics and tolerances), ``golden.py`` (stored references), ``report.py``.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .. import model_process as model_processes
from .. import outputs as out
from ..config import BertConfig
from ..errors import InputError
from .compare import DEFAULT_TOLERANCES, Tolerance, compare_output, compare_outputs, tolerance_for
from .golden import load_golden, save_golden_file
from .inputs import describe_inputs, make_validation_inputs, text_inputs
from .references import compute_reference, open_against, reference_config
from .report import DtypeRun, OutputComparison, ValidationReport
from .runners import _DEVICE_NAME, DTYPES, exact_float32, resolve_device, run_one, transformers_outputs

__all__ = ["validate", "quick_check", "ValidationReport", "DtypeRun", "OutputComparison", "Tolerance",
           "DEFAULT_TOLERANCES", "compare_output", "compare_outputs", "tolerance_for", "load_golden",
           "save_golden_file", "make_validation_inputs", "compute_reference", "resolve_device", "exact_float32",
           "transformers_outputs", "DTYPES"]


def validate(converted: str | Path, *, against=None, golden: str | Path | None = None, reference: str = "numpy",
             device: str = "auto", dtypes=("float32",), batch: int = 2, seq_len: int = 16, seed: int = 0,
             text: str | Path | None = None, tolerance: float | None = None, with_transformers: bool = False,
             save_golden: str | Path | None = None, source_config=None, tower: str | None = None,
             verify_crc: bool = True, overwrite: bool = False, step: int | None = None,
             settings: dict | None = None, model_process=None) -> ValidationReport:
    """Run the converted model and compare each output with the reference, for each dtype.

    ``against``: the original checkpoint (any path ``open_source`` reads; or a TensorSource, or a
    mapping of the original names to arrays). ``golden``: a ``.npz`` of inputs and reference
    outputs, used instead. ``save_golden`` replaces an existing file only with ``overwrite``.
    ``source_config``: the original's config when ``against`` has no config file beside it.
    ``step``: which ``model.ckpt-N`` of a TensorFlow training directory ``against`` is.
    ``settings``: config facts applied to the original's config file (``--set``); a setting its
    files do not record is otherwise the converted model's. ``model_process``: a
    :class:`~bertconv.model_process.RunnerProcess` to run the model in (the console script's,
    importing torch meanwhile); without one, the console script starts its own and a program runs
    the model in its own process.
    """
    from ..converted import describe_converted, family_of

    started = time.perf_counter()
    converted = Path(converted)
    if isinstance(dtypes, str):
        dtypes = tuple(d.strip() for d in dtypes.split(",") if d.strip())
    if not dtypes:
        raise InputError("no dtype to validate", hint=f"choose from {', '.join(DTYPES)}")
    for d in dtypes:
        if d not in DTYPES:
            raise InputError(f"unknown dtype {d!r}", hint=f"choose from {', '.join(DTYPES)}")
    if reference not in ("numpy", "tf"):
        raise InputError(f"unknown reference {reference!r}", hint="choose numpy or tf")
    if golden is None and against is None:
        raise InputError("nothing to validate against", path=converted,
                         hint="pass --against with the original TF checkpoint, or --golden with stored outputs")
    if golden is not None and against is not None:
        raise InputError("give --against or --golden, not both")
    if golden is not None and save_golden is not None:
        raise InputError("--save-golden stores a reference computed from --against; it cannot copy --golden")
    if not _DEVICE_NAME.match(str(device)):
        resolve_device(device)  # raises the usage error before any work

    with contextlib.ExitStack() as stack:
        if model_process is None:
            # torch's import, most of a check's time, runs there while the reference runs here
            model_process = stack.enter_context(model_processes.for_check())
        # The config only: each run below reads the weights for itself, in its own dtype.
        config, config_dict, architecture = describe_converted(converted)
        family = family_of(config_dict, architecture)
        directory = converted if converted.is_dir() else None
        notes: list[str] = []
        tower = _tower(family, config_dict, architecture, tower)
        if with_transformers and not family.runs_in_transformers:
            raise InputError(f"--with-transformers runs BERT models; this {family.name} model is run by bertconv's own",
                             hint="drop --with-transformers")

        reference_started = time.perf_counter()
        golden_metadata: dict[str, Any] = {}
        if golden is not None:
            if text is not None:
                notes.append("--text ignored: a golden file carries its own inputs")
            inputs, reference_outputs, golden_metadata = load_golden(golden)
            description = f"golden outputs {golden}"
            if golden_metadata.get("reference"):
                description += f" ({golden_metadata['reference']})"
            source_label = None
        else:
            weights, close, layout = open_against(against, verify_crc, step)
            try:
                ref_config, config_origin = reference_config(weights, config_dict, source_config, family, layout,
                                                             settings=settings, notes=notes)
                if text is not None:
                    inputs = text_inputs(text, directory, config)
                else:
                    vocab = directory / "vocab.txt" if directory else None
                    inputs = family.validation_inputs(make_validation_inputs(config, batch, seq_len, seed, vocab), config)
                with _beside(model_process):
                    reference_outputs = compute_reference(weights, ref_config, inputs, reference, family=family,
                                                          tower=tower,
                                                          heads=family.reference_heads(weights, architecture))
            finally:
                close()
            described = against if isinstance(against, (str, Path)) else "the given weights"
            description = (f"bertconv's {family.name} reference (NumPy, float64)" if reference == "numpy"
                           else "TensorFlow (float64, eager)") + f" over {described}"
            if config_origin != "given":
                notes.append(f"the original's config came from {config_origin}")
            source_label = str(against) if isinstance(against, (str, Path)) else None
        reference_seconds = time.perf_counter() - reference_started

        input_summary = {**describe_inputs(inputs, config),
                         "seed": seed if golden is None and text is None else None,
                         "text": str(text) if text is not None and golden is None else None}

        saved = None
        if save_golden is not None:
            metadata = {"config": config_dict, "seed": seed if text is None else None, "source": source_label,
                        "reference": reference, "bertconv_version": __version__, "architecture": architecture}
            save_golden_file(save_golden, inputs, reference_outputs, metadata, overwrite=overwrite)
            saved = str(save_golden)

        dev = resolve_device(device) if model_process is None else None
        device_name = str(dev) if dev is not None else device  # the model's process names it
        runs = []
        for dtype_name in dtypes:
            if model_process is None:
                ours, facts = run_one(converted, dtype_name, dev, with_transformers=with_transformers,
                                      architecture=architecture, family=family, inputs=inputs)
            else:
                ours, facts, device_name = model_process.run(converted, dtype_name, device,
                                                             with_transformers=with_transformers,
                                                             architecture=architecture, inputs=inputs)
            tol = tolerance_for(dtype_name, facts["weights_dtype"], tolerance)
            comparisons, unreferenced, first = compare_outputs(ours, reference_outputs, config.num_hidden_layers, tol)
            passed = not unreferenced and first is None and bool(comparisons)
            runs.append(DtypeRun(dtype=dtype_name, device=device_name,
                                 runner="transformers" if with_transformers else "bertconv.model",
                                 outputs=comparisons, unreferenced=unreferenced, first_diverging=first,
                                 passed=passed, **facts))
        produced = set().union(*(set(o.name for o in run.outputs) | set(run.unreferenced) for run in runs))
        not_compared = out.ordered(set(reference_outputs) - produced, config.num_hidden_layers)
        if device_name.startswith("cuda") and "float32" in dtypes:
            notes.append("float32 on CUDA ran with TF32 disabled (matmul and cuDNN), restored afterwards")
        return ValidationReport(converted=str(converted), reference=description,
                                against=source_label, golden=str(golden) if golden is not None else None,
                                device=device_name, architecture=architecture, inputs=input_summary, runs=runs,
                                not_compared=not_compared, notes=notes, reference_seconds=reference_seconds,
                                seconds=time.perf_counter() - started, saved_golden=saved)


def _beside(model_process):
    """While a model's process imports torch on one core, the reference's BLAS keeps to the other:
    a second BLAS thread waiting on a taken core slows the products several times over
    (docs/performance.md). NumPy cannot set its thread count itself once imported."""
    if model_process is None or not model_process.importing():
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _tower(family, config_dict: dict[str, Any], architecture: str, tower: str | None) -> str | None:
    """For a family whose checkpoints hold several models (ELECTRA), the tower this model was
    converted from: its head says, else the conversion's record."""
    if not family.towers:
        if tower is not None:
            raise InputError(f"--tower {tower}: the converted model is not one of a checkpoint's several models",
                             hint="leave out --tower")
        return None
    if tower is not None and tower not in family.towers:
        raise InputError(f"unknown tower {tower!r}", hint=f"choose {' or '.join(family.towers)}")
    recorded = family.tower_of(architecture, (config_dict.get("bertconv") or {}).get("tower"))
    if tower is not None and recorded is not None and tower != recorded:
        raise InputError(f"--tower {tower}, but the converted model is the {recorded} ({architecture})")
    return tower or recorded or next(iter(family.towers))


def quick_check(converted: str | Path, source, config: BertConfig, *, dtype: str = "float32", batch: int = 2,
                seq_len: int = 16, seed: int = 0, device: str = "cpu",
                tolerance: float | None = None, model_process=None) -> ValidationReport:
    """The check ``tf2pt`` runs on what it has just written: a small batch through the converted
    model against the NumPy reference over the still-open source."""
    seq_len = min(seq_len, config.max_position_embeddings)
    compute = dtype if dtype in DTYPES else "float32"
    if compute != "float32" and device == "cpu":
        # Half-precision weights are judged in float32 on the CPU: the bound is float16's/bfloat16's
        # anyway (see tolerance_for), and CPU half-precision matmuls are slow and add nothing.
        compute = "float32"
    return validate(converted, against=source, reference="numpy", device=device, dtypes=(compute,), batch=batch,
                    seq_len=seq_len, seed=seed, tolerance=tolerance, source_config=config,
                    model_process=model_process)
