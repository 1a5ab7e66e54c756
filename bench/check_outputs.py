"""Two revisions of bertconv write the same bytes: every fixture that converts is converted by each
(``tf2pt`` into a Hugging Face directory and into one ``.safetensors`` file; ``pt2tf`` back from
the directory where the family has a way back) and the files are compared by SHA-256.

    python3 bench/check_outputs.py --before /tmp/old-checkout --after .

``--before`` and ``--after`` are source trees (checkouts) of bertconv, each imported through
PYTHONPATH by the same interpreter (``--python``, default the project's .venv), with its compiled
kernels where it has them. Conversions run with ``--no-validate``: the check of an output does not
change its bytes, and the test suite runs it. A fixture that the earlier revision does not convert
with default options is listed with its reason, not compared. Prints a markdown table; exits 1
when any output differs. Standard library only.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
#: directories that hold fixtures rather than being one
CONTAINERS = ("keras_era", "reader")
#: weight files inside a fixture directory that are a source of their own (Keras-era files)
WEIGHT_SUFFIXES = (".h5", ".weights")


def candidates(fixtures: Path) -> list[tuple[str, Path, list[str]]]:
    """(label, source, extra tf2pt options) for every fixture that may convert."""
    found = []
    for directory in sorted(p for p in fixtures.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        inner = sorted(p for p in directory.iterdir() if p.is_dir()) if directory.name in CONTAINERS else [directory]
        for fixture in inner:
            extra = ["--keep-tokens", str(fixture / "keep_tokens.json")] if (fixture / "keep_tokens.json").is_file() else []
            label = str(fixture.relative_to(fixtures))
            found.append((label, fixture, extra))
            for weights in sorted(p for p in fixture.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
                found.append((f"{label}/{weights.name}", weights, extra))
            if (fixture / "electra_config.json").is_file() or fixture.name.startswith("electra"):
                found.append((f"{label} --tower generator", fixture, [*extra, "--tower", "generator"]))
    return found


def bertconv(tree: Path, python: str, *args: str) -> subprocess.CompletedProcess:
    # -P: the working directory is not put on sys.path, so PYTHONPATH's tree is the one imported
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    return subprocess.run([python, "-P", "-m", "bertconv.cli", *args], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir())


def digests(path: Path) -> dict[str, str]:
    """Relative file name -> SHA-256 of every file of an output (a directory or one file)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    out = {}
    for file in files:
        h = hashlib.sha256()
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out["." if file == path else str(file.relative_to(path))] = h.hexdigest()
    return out


def reason(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("bertconv:")]
    return ((ours or lines or [f"exit {done.returncode}"])[-1])[:160].replace("|", "\\|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the earlier revision's source tree")
    parser.add_argument("--after", type=Path, default=REPO_DIR, help="the later revision's source tree (default: this one)")
    parser.add_argument("--python", default=str(REPO_DIR / ".venv" / "bin" / "python"),
                        help="the interpreter (with bertconv's dependencies) both trees run in")
    parser.add_argument("--fixtures", type=Path, default=REPO_DIR / "fixtures")
    parser.add_argument("--work", type=Path, help="where outputs are written (default: a temporary directory)")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    work = args.work or Path(tempfile.mkdtemp(prefix="bertconv-check-outputs-"))
    rows, differing, compared = [], 0, 0

    def record(label: str, kind: str, outputs: dict[str, Path], dones: dict) -> None:
        nonlocal differing, compared
        failed = {name: d for name, d in dones.items() if d.returncode != 0}
        if failed:
            if "before" in failed and "after" in failed:
                rows.append((label, kind, "-", "-", f"not converted by either: {reason(failed['before'])}"))
            else:
                differing += 1
                name = next(iter(failed))
                rows.append((label, kind, "-", "-", f"**DIFFERENT**: only {name} fails: {reason(failed[name])}"))
            return
        a, b = digests(outputs["before"]), digests(outputs["after"])
        compared += 1
        same = a == b
        if not same:
            differing += 1
            changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            verdict = "**DIFFERENT**: " + ", ".join(changed)
        else:
            verdict = "identical"
        first = a.get("model.safetensors") or a.get(".") or a.get("bert_model.ckpt.data-00000-of-00001") \
            or next(iter(a.values()), "")
        rows.append((label, kind, str(len(a)), first[:16], verdict))

    for label, source, extra in candidates(args.fixtures):
        slug = label.replace("/", "_").replace(" ", "_")
        for kind, suffix, options in (("tf2pt hf", "", []), ("tf2pt safetensors", ".safetensors",
                                                              ["--format", "safetensors"])):
            outputs = {name: work / name / f"{slug}{suffix}" for name in trees}
            dones = {}
            for name, tree in trees.items():
                shutil.rmtree(outputs[name], ignore_errors=True)
                if outputs[name].is_file():
                    outputs[name].unlink()
                outputs[name].parent.mkdir(parents=True, exist_ok=True)
                dones[name] = bertconv(tree, args.python, "tf2pt", str(source), str(outputs[name]), "--no-validate",
                                       "-q", *options, *extra)
            record(label, kind, outputs, dones)
            if kind == "tf2pt hf" and all(d.returncode == 0 for d in dones.values()):
                hf = outputs["before"]  # one input for both: the way back is compared on its own
                back = {name: work / name / f"{slug}.pt2tf" for name in trees}
                # a model with Hugging Face's erf GELU goes back only when asked to (it is written as
                # google-research/bert's tanh "gelu"): asked, so that its bytes are compared too
                for back_kind, back_options in (("pt2tf", []), ("pt2tf --allow-exact-gelu", ["--allow-exact-gelu"])):
                    back_dones = {}
                    for name, tree in trees.items():
                        shutil.rmtree(back[name], ignore_errors=True)
                        back_dones[name] = bertconv(tree, args.python, "pt2tf", str(hf), str(back[name]), "-q",
                                                    *back_options)
                    if back_dones["before"].returncode == 0 or back_dones["after"].returncode == 0:
                        record(label, back_kind, back, back_dones)
                        break
                    if "exact erf GELU" not in back_dones["before"].stderr:
                        rows.append((label, back_kind, "-", "-", f"no way back: {reason(back_dones['before'])}"))
                        break
                else:
                    rows.append((label, back_kind, "-", "-", f"no way back: {reason(back_dones['before'])}"))
        print(f"{label}: {rows[-1][-1]}", file=sys.stderr)

    revisions = {name: subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                                      text=True).stdout.strip() or "?" for name, tree in trees.items()}
    print(f"before: {trees['before']} ({revisions['before']}); after: {trees['after']} ({revisions['after']})\n")
    print("| fixture | output | files | sha256 of the weights (first 16) | before vs after |")
    print("| --- | --- | ---: | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{compared} outputs compared, {differing} different")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
