"""The report bench/run.py writes: docs/benchmarks.md from the timed results, the targets and
the properties. Standard library only."""
from __future__ import annotations

import shlex
import statistics

import properties
from cases import Target
from harness import MB, REPO_DIR, Result


# ---------------------------------------------------------------------------------- the report


def render_markdown(results: list[Result], targets: list[Target], checked: list[properties.Outcome],
                    info: dict) -> str:
    lines = ["# Benchmarks", "",
             "<!-- Written by bench/run.py; rerun it rather than editing the figures by hand. -->", "",
             f"Measured {info['date']} at revision {info['revision']}, {info['rounds']} round(s)"
             + (" (`--quick`: Base only)" if info["quick"] else "") + ".", ""]
    if info.get("note"):
        lines += [f"**Note:** {info['note']}", ""]
    machine = info["machine"]
    ours, hf4 = info["versions"], info["hf4_versions"]
    lines += ["## Machine", "",
              f"- CPU: {machine['cpu']}, {machine['cores']} usable core(s) ({machine['logical_cpus']} logical)",
              f"- Memory: {machine['memory']}; {machine['system']} {machine['kernel']}; free memory reported to "
              f"the host (virtio-balloon free page reporting): {machine.get('free_page_reporting', '?')}",
              f"- Filesystem of bench/work: {machine['filesystem']}; {machine['cp']}",
              f"- Load average (1, 5, 15 min) before: {info['load_before']}; after: {info['load_after']}",
              f"- bertconv environment: Python {ours.get('python', '?')}, torch {ours.get('torch', '?')}, "
              f"tensorflow-cpu {ours.get('tensorflow-cpu', ours.get('tensorflow', '?'))}, "
              f"safetensors {ours.get('safetensors', '?')}, numpy {ours.get('numpy', '?')}",
              f"- `bertconv --version`: {info.get('bertconv_version') or '?'}",
              f"- Baseline environment ({info['hf4_venv']}): "
              + (f"Python {hf4.get('python', '?')}, transformers {hf4.get('transformers', '?')}, torch "
                 f"{hf4.get('torch', '?')}, tensorflow-cpu {hf4.get('tensorflow-cpu', '?')}, numpy "
                 f"{hf4.get('numpy', '?')}" if hf4 else "unavailable"),
              "",
              "## How it is measured", "",
              "- Each command runs under GNU `/usr/bin/time -v`; peak RSS is its \"Maximum resident set size\" "
              "(the whole process). Wall time is measured around it.",
              "- Rounds are interleaved: every round runs every case once, in the order of the table, so load "
              "from elsewhere falls on all cases alike. Ratios compare medians from the same run.",
              f"- {info['rounds']} timed round(s), after {info['warmup']} untimed warm-up round(s). "
              "The table's peak RSS is the largest of the runs; a range after it means the runs differed.",
              "- The page cache is warmed before the first round: all cases read checkpoints from memory. "
              "Before each run, earlier writes are flushed (`sync`) and then the case's previous output is deleted, untimed.",
              "- Checkpoints are written by `bench/make_checkpoints.py` with TensorFlow's own "
              "`tf.compat.v1.train.Saver`: Google's variable names and sizes (BERT-Base: 440 MB of weights, "
              "BERT-Large: 1345 MB), pretraining heads included, random values.",
              "- MB = 10^6 bytes.", "",
              "## Results", "",
              "| case | median s | min s | max s | peak RSS MB (max over runs) | runs | status |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for result in results:
        ok = result.ok_runs
        if result.failure:
            status = "FAILED: " + markdown_cell(result.failure)
        else:
            status = "ok"
        if ok and not result.failure:
            seconds = [r.seconds for r in ok]
            rss = [r.peak_rss_bytes / MB for r in ok]
            # a spread in peak RSS means the command did not do the same work each time: show it
            rss_cell = f"{max(rss):.0f}" if max(rss) <= 1.05 * min(rss) + 1 else f"{max(rss):.0f} ({min(rss):.0f}-{max(rss):.0f})"
            cells = [f"{statistics.median(seconds):.2f}", f"{min(seconds):.2f}", f"{max(seconds):.2f}", rss_cell]
        else:
            cells = ["-", "-", "-", "-"]
        lines.append(f"| {result.case.label} | " + " | ".join(cells) + f" | {len(result.runs)} | {status} |")
    lines += ["", "## Targets", "", "| target | measured | result |", "| --- | --- | --- |"]
    for target in targets:
        verdict = {True: "pass", False: "**FAIL**", None: "not measured"}[target.passed]
        lines.append(f"| {target.description} | {markdown_cell(target.measured)} | {verdict} |")
    if checked:
        lines += ["", "## Properties", "",
                  "How the work is done, checked against thresholds by `bench/properties.py` (each in a fresh "
                  "interpreter; `docs/performance.md` says why each exists).", "",
                  "| property | threshold | measured | result |", "| --- | --- | --- | --- |"]
        for outcome in checked:
            verdict = {True: "pass", False: "**FAIL**", None: "not measured"}[outcome.passed]
            lines.append(f"| {markdown_cell(outcome.description)} | {markdown_cell(outcome.threshold)} | "
                         f"{markdown_cell(outcome.measured)} | {verdict} |")
    lines += ["", "## Commands", "", "Paths are relative to the repository root.", "", "```"]
    for result in results:
        lines.append(display_command(result.case.command))
    lines += ["```", "", "## Reproduce", "",
              "From the repository root, with the project's environment in `.venv`. The first run writes the "
              "checkpoints into bench/work (about 30 s, 2 GB of memory) and the baseline's environment "
              "bench/work/venv-hf4 (1-2 minutes); later runs reuse both. `--quick` times Base only, once, and "
              "writes bench/work/benchmarks-quick.md instead of this file.", "", "```",
              "apt-get update && apt-get install -y time   # if /usr/bin/time is missing",
              info["reproduce"], "```", ""]
    return "\n".join(lines)


def markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:400]


def display_command(command: list[str]) -> str:
    shown = []
    for part in command:
        for prefix, short in ((str(REPO_DIR) + "/", ""),):
            if part.startswith(prefix):
                part = short + part[len(prefix):]
        shown.append(part)
    return shlex.join(shown)
