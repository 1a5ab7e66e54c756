"""The cases bench/run.py times (bertconv's commands beside `cp`, TensorFlow's own listing and the
transformers 4.x converter) and the targets they are held to. Standard library only."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import CHECKPOINT_DATA, MB, REPO_DIR, WORK_DIR, Case, Result, error_lines, remove

HF4_CONVERTER_MODULE = "transformers.models.bert.convert_bert_original_tf_checkpoint_to_pytorch"


# ---------------------------------------------------------------------------------- the plan


def build_cases(checkpoints: dict[str, Path], bertconv: str, tf_python: str, hf4_python: str | None,
                out: Path) -> tuple[list[Case], dict[str, str]]:
    """The cases to time, and the reason for any case that cannot run at all."""
    cases, unavailable = [], {}
    base = checkpoints["base"]
    large = checkpoints.get("large")
    listed = large if large is not None else base
    listed_size = "Large" if large is not None else "Base"

    def cp_case(size, directory):
        target = out / f"cp-{size}.data"
        return Case(f"cp_{size}", f"`cp` of the {size.capitalize()} `.data` file",
                    ["cp", str(directory / CHECKPOINT_DATA), str(target)], clean=[target], produces=[target])

    def tf2pt_case(key, label, directory, extra):
        target = out / key
        return Case(key, label, [bertconv, "tf2pt", str(directory), str(target), *extra, "--overwrite", "-q"],
                    clean=[target], produces=[target / "model.safetensors", target / "config.json"])

    def hf4_case(size, directory):
        target = out / f"hf4-{size}" / "pytorch_model.bin"
        case = Case(f"hf4_{size}", f"transformers 4.46.3 converter, {size.capitalize()}",
                    [hf4_python or "python", "-m", HF4_CONVERTER_MODULE,
                     "--tf_checkpoint_path", str(directory / "bert_model.ckpt"),
                     "--bert_config_file", str(directory / "bert_config.json"),
                     "--pytorch_dump_path", str(target)],
                    clean=[target], produces=[target],
                    prepare=lambda: target.parent.mkdir(parents=True, exist_ok=True))
        if hf4_python is None:
            unavailable[case.key] = "no transformers 4.46.3 environment"
        return case

    # no target: the fixed cost (interpreter start and imports) that every bertconv command pays
    cases.append(Case("startup", "`bertconv --version` (start-up cost only)", [bertconv, "--version"]))
    cases.append(cp_case("base", base))
    if large is not None:
        cases.append(cp_case("large", large))
    cases.append(tf2pt_case("tf2pt_base", "`bertconv tf2pt` Base, `--no-validate`", base, ["--no-validate"]))
    if large is not None:
        cases.append(tf2pt_case("tf2pt_large", "`bertconv tf2pt` Large, `--no-validate`", large, ["--no-validate"]))
    cases.append(tf2pt_case("tf2pt_base_validated", "`bertconv tf2pt` Base, default validation", base, []))
    cases.append(Case("inspect", f"`bertconv inspect` {listed_size}", [bertconv, "inspect", str(listed)]))
    index_only = out / "index-only"

    def prepare_index_only():
        # the same checkpoint with its data file absent (as a Git LFS clone without `git lfs pull`)
        remove(index_only)
        index_only.mkdir(parents=True)
        for name in ("bert_model.ckpt.index", "bert_config.json", "vocab.txt"):
            shutil.copyfile(listed / name, index_only / name)
        return None

    cases.append(Case("inspect_index_only", f"`bertconv inspect` {listed_size}, index only (no data file)",
                      [bertconv, "inspect", str(index_only)], prepare=prepare_index_only))
    cases.append(Case("list_variables", f"`tf.train.list_variables` {listed_size}",
                      [tf_python, "-c", "import sys, tensorflow as tf; "
                       "print(len(tf.train.list_variables(sys.argv[1])))", str(listed / "bert_model.ckpt")]))

    validate_input = out / "validate-input"

    def prepare_validate():
        # made afresh by this bertconv, so a stale output of an older version is never validated
        remove(validate_input)
        done = subprocess.run([bertconv, "tf2pt", str(base), str(validate_input), "--no-validate", "--overwrite",
                               "-q"], capture_output=True, text=True, cwd=REPO_DIR)
        if done.returncode != 0 or not (validate_input / "model.safetensors").exists():
            remove(validate_input)
            return f"its input could not be made (`bertconv tf2pt` exit {done.returncode}): " + error_lines(done.stderr)
        return None

    cases.append(Case("validate", "`bertconv validate` Base, 2x128 tokens, CPU",
                      [bertconv, "validate", str(validate_input), "--against", str(base), "--batch", "2",
                       "--seq-len", "128", "--device", "cpu"], prepare=prepare_validate))
    savedmodel = WORK_DIR / "savedmodel-base"
    savedmodel_tf1 = out / "savedmodel-base-tf1"

    def prepare_savedmodel_tf1():
        # the SavedModel's own weights as a TF1 bundle: converted, then written back by pt2tf
        converted = out / "savedmodel-base-hf"
        for command in ([bertconv, "tf2pt", str(savedmodel), str(converted), "--no-validate", "--overwrite", "-q"],
                        [bertconv, "pt2tf", str(converted), str(savedmodel_tf1), "--overwrite", "-q"]):
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_DIR)
            if done.returncode != 0:
                return f"`{' '.join(command[1:3])}` exit {done.returncode}: " + error_lines(done.stderr)
        return None

    cases.append(tf2pt_case("tf2pt_savedmodel", "`bertconv tf2pt` Base tf-models TF Hub SavedModel, `--no-validate`",
                            savedmodel, ["--no-validate"]))
    cases.append(tf2pt_case("tf2pt_savedmodel_tf1", "`bertconv tf2pt` the same weights as a TF1 bundle, "
                            "`--no-validate`", savedmodel_tf1, ["--no-validate"]))
    cases[-1].prepare = prepare_savedmodel_tf1
    if not (savedmodel / "saved_model.pb").is_file():
        for key in ("tf2pt_savedmodel", "tf2pt_savedmodel_tf1"):
            unavailable[key] = "no Base SavedModel: run bench/make_savedmodel.py in a tf-models-official environment"
    cases.append(hf4_case("base", base))
    if large is not None:
        cases.append(hf4_case("large", large))
    return cases, unavailable


# ---------------------------------------------------------------------------------- targets


@dataclass
class Target:
    description: str
    measured: str
    passed: bool | None  # None: could not be measured


def evaluate_targets(results: dict[str, Result]) -> list[Target]:
    def median(key):
        r = results.get(key)
        return r.median_seconds() if r else None

    def rss(key):
        r = results.get(key)
        return r.peak_rss() if r else None

    def missing(*keys):
        reasons = []
        for key in keys:
            r = results.get(key)
            if r is None:
                reasons.append(f"{key} not run")
            elif r.failure:
                reasons.append(f"{key} failed")
        return "; ".join(reasons)

    targets = []

    def ratio_target(description, numerator, denominator, limit, at_least):
        gap = missing(numerator, denominator)
        if gap:
            targets.append(Target(description, gap, None))
            return
        ratio = median(numerator) / median(denominator)
        passed = ratio >= limit if at_least else ratio <= limit
        targets.append(Target(description, f"{ratio:.2f}x ({median(numerator):.2f} s / {median(denominator):.2f} s)",
                              passed))

    def rss_target(description, key, limit_mb):
        gap = missing(key)
        if gap:
            targets.append(Target(description, gap, None))
            return
        targets.append(Target(description, f"{rss(key) / MB:.0f} MB", rss(key) <= limit_mb * MB))

    def time_target(description, key, limit_s):
        gap = missing(key)
        if gap:
            targets.append(Target(description, gap, None))
            return
        targets.append(Target(description, f"{median(key):.2f} s", median(key) <= limit_s))

    ratio_target("tf2pt Base --no-validate: >= 10x faster than transformers 4.x", "hf4_base", "tf2pt_base", 10, True)
    ratio_target("tf2pt Base --no-validate: <= 2.5x the time of `cp` of its `.data` file", "tf2pt_base", "cp_base",
                 2.5, False)
    rss_target("tf2pt Base --no-validate: peak RSS <= 250 MB", "tf2pt_base", 250)
    ratio_target("tf2pt Large --no-validate: >= 10x faster than transformers 4.x", "hf4_large", "tf2pt_large", 10,
                 True)
    rss_target("tf2pt Large --no-validate: peak RSS <= 300 MB", "tf2pt_large", 300)
    ratio_target("tf2pt Base with default validation: <= 0.5x the transformers 4.x converter's time",
                 "tf2pt_base_validated", "hf4_base", 0.5, False)
    listed = "Large" if "tf2pt_large" in results else "Base (target is on Large)"
    ratio_target(f"inspect {listed}: >= 15x faster than `tf.train.list_variables`", "list_variables", "inspect",
                 15, True)
    rss_target(f"inspect {listed}: peak RSS <= 100 MB", "inspect", 100)
    time_target("validate Base, 2x128 tokens, all heads, CPU: <= 5 s end to end", "validate", 5)
    ratio_target(f"inspect {listed}, index only: no slower than with its data (<= 1.1x, the noise margin)",
                 "inspect_index_only", "inspect", 1.1, False)
    ratio_target("tf2pt of a Base SavedModel: <= 1.2x the same weights as a TF1 bundle", "tf2pt_savedmodel",
                 "tf2pt_savedmodel_tf1", 1.2, False)
    return targets
