"""The damage harness, CI-sized: seeded damage over a fixture of every format bertconv reads, each
run of every command judged by ``tests/damage_harness.py``'s rule (exit 0, 1 or 2; one error line,
no traceback, no "unexpected error"; nothing left behind). ``bench/damage.py`` runs thousands;
its figures are in docs/robustness.md. Run with ``-s`` to see the counts."""
from __future__ import annotations

import resource

import pytest

from . import damage_harness as harness

#: how far the whole harness may raise this process's peak memory: the fixtures are a few hundred
#: kilobytes, so a length or count field that made a reader allocate what it claims shows here
PEAK_GROWTH_LIMIT_KB = 1 << 20


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    pytest.importorskip("torch", reason="the pytorch_model.bin source is written with torch.save")
    prepared = harness.prepare(tmp_path_factory.mktemp("damage"))
    missing = {name for name, *_ in harness.SOURCES} - {s.name for s in prepared}
    if missing:
        pytest.skip(f"fixtures missing for {sorted(missing)}: run the scripts in fixtures/")
    return prepared


def test_every_damaged_run_of_every_command_ends_cleanly(sources, tmp_path):
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = []
    for source, file, kind, command, seed in harness.suite_runs(sources):
        outcome = harness.run_one(source, file, kind, command, seed, tmp_path / "outputs")
        if outcome is not None:
            outcomes.append(outcome)
    summary = harness.summarise(outcomes)
    print(f"\n[damage] {summary}")
    unclean = [o for o in outcomes if not o.clean]
    assert not unclean, "\n".join(f"{o.source} {o.file} {o.damage} {o.command} seed {o.seed}: {o.problems}"
                                  for o in unclean[:10])
    assert summary["runs"] >= 300
    assert set(summary["sources"]) == {name for name, *_ in harness.SOURCES}
    assert set(summary["commands"]) == {"inspect", "tf2pt", "diff", "validate", "pt2tf"}
    assert set(summary["damages"]) == set(harness.DAMAGES)
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert growth < PEAK_GROWTH_LIMIT_KB, f"peak memory grew by {growth} KB over the damaged runs"


def test_the_judge_sees_what_it_is_meant_to_see(sources, tmp_path, monkeypatch):
    """A leaked exception and a temporary left behind are reported, not passed."""
    source = next(s for s in sources if s.name == "tf-bundle")

    def leaking(*args, **kwargs):
        raise RuntimeError("Can't iterate over symbol table")
    monkeypatch.setattr("bertconv.inspection.open_source", leaking)  # as an h5py error once leaked
    outcome = harness.run_one(source, "vocab.txt", "bit-flips", "inspect", 1, tmp_path / "outputs")
    assert outcome is not None and not outcome.clean
    assert any("unexpected error" in p for p in outcome.problems), outcome.problems
    monkeypatch.undo()
    stray = source.directory / ".bert_model.ckpt.bertconv-tmp-x"

    real_run = harness._run_cli

    def leaving(args):
        stray.write_text("")
        return real_run(args)
    monkeypatch.setattr(harness, "_run_cli", leaving)
    outcome = harness.run_one(source, "vocab.txt", "bit-flips", "inspect", 1, tmp_path / "outputs")
    stray.unlink()
    assert outcome is not None and any("left in the source" in p for p in outcome.problems), outcome.problems
