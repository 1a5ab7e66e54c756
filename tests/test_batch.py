"""``tf2pt RELEASE OUT --all``: every checkpoint under a directory converted into a mirrored tree,
in worker processes, one failure not stopping the others, a rerun skipping what is done."""
from __future__ import annotations

import json
import shutil

import pytest

from bertconv.batch import convert_all, find_checkpoints
from bertconv.cli import main
from bertconv.errors import InputError
from bertconv.model_card import read_provenance

from .conftest import fixture_dir


def training_directory(path, steps=(100, 200)):
    """A training run's directory: the same weights saved at two steps, and the state file."""
    src = fixture_dir("bert_pretrain")
    path.mkdir(parents=True)
    for step in steps:
        for suffix in (".index", ".data-00000-of-00001"):
            shutil.copy(src / f"bert_model.ckpt{suffix}", path / f"model.ckpt-{step}{suffix}")
    for name in ("bert_config.json", "vocab.txt"):
        shutil.copy(src / name, path / name)
    return path


@pytest.fixture
def release(tmp_path):
    """Two variants side by side, a training run, and a directory whose checkpoint is damaged."""
    root = tmp_path / "release"
    shutil.copytree(fixture_dir("bert_pretrain"), root / "uncased_L-2_H-32")
    shutil.copytree(fixture_dir("bert_classifier"), root / "cased" / "classifier")
    training_directory(root / "run")
    broken = root / "broken"
    shutil.copytree(fixture_dir("bert_noheads"), broken)
    data = broken / "bert_model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-100])
    return root


def test_finds_every_checkpoint_and_mirrors_the_tree(release, tmp_path):
    out = tmp_path / "out"
    found = {c.name: (c.source, c.output) for c in find_checkpoints(release, out)}
    assert sorted(found) == ["broken", "cased/classifier", "run", "uncased_L-2_H-32"]
    assert found["run"] == (str(release / "run"), str(out / "run"))  # the directory: its newest step
    steps = [c.name for c in find_checkpoints(release, out, all_steps=True) if c.name.startswith("run")]
    assert steps == ["run/model.ckpt-100", "run/model.ckpt-200"]
    assert find_checkpoints(release, release / "uncased_L-2_H-32") != []  # an output inside is not a source
    with pytest.raises(InputError, match="not one"):
        find_checkpoints(release / "run" / "vocab.txt", out)


def test_converts_all_in_parallel_one_failure_stops_none_and_a_rerun_skips(release, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["tf2pt", str(release), str(out), "--all", "--all-steps", "-j", "2"])
    stdout, err = capsys.readouterr()
    assert rc == 2 and "bertconv: error:" in err and "1 of 5 checkpoint(s) failed to convert: broken" in err
    table = stdout.split("\n\n")[0].splitlines()
    assert table[0].split() == ["source", "family", "class", "parameters", "validation", "time"]
    rows = {line.split()[0]: line for line in table[2:]}
    assert sorted(rows) == ["broken", "cased/classifier", "run/model.ckpt-100", "run/model.ckpt-200",
                            "uncased_L-2_H-32"]
    assert "BertForSequenceClassification  26,179" in rows["cased/classifier"] and "passed" in rows["run/model.ckpt-200"]
    assert "FAILED (below)" in rows["broken"]
    assert "failed       broken: " in stdout and "data-00000-of-00001" in stdout
    assert "5 checkpoint(s)" in stdout and "4 converted, 1 failed; 2 at once" in stdout
    # each worker's checks ran their models in a process of its own beside it, its peak said
    assert "MiB resident, its models' process " in stdout
    for name in ("uncased_L-2_H-32", "cased/classifier", "run/model.ckpt-100", "run/model.ckpt-200"):
        assert (out / name / "model.safetensors").is_file() and read_provenance(out / name)["validation"]["passed"]
    assert not (out / "broken").exists()
    assert "--all --all-steps -j 2 (this checkpoint: bertconv tf2pt" in read_provenance(out / "run/model.ckpt-100")["command"]

    # a rerun converts only what is not done yet; --json says what happened to each
    rc = main(["tf2pt", str(release), str(out), "--all", "--all-steps", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 2 and data["failed"] == 1
    assert {i["name"]: i["status"] for i in data["items"]} == {
        "broken": "failed", "cased/classifier": "skipped", "run/model.ckpt-100": "skipped",
        "run/model.ckpt-200": "skipped", "uncased_L-2_H-32": "skipped"}


def test_overwrite_redoes_and_a_changed_source_is_not_skipped(tmp_path):
    release = tmp_path / "release"
    shutil.copytree(fixture_dir("bert_pretrain"), release / "a")
    shutil.copytree(fixture_dir("bert_noheads"), release / "b")
    out = tmp_path / "out"
    first = convert_all(release, out, jobs=1)
    assert [i.status for i in first.items] == ["converted", "converted"] and first.jobs == 1
    config = release / "b" / "bert_config.json"
    config.write_text(config.read_text() + "\n")  # the same config, but not the file the card names
    again = convert_all(release, out, jobs=1)
    assert [i.status for i in again.items] == ["skipped", "failed"]
    assert "output already exists" in again.items[1].error and "overwrite=True" in again.items[1].error
    assert "--overwrite" in again.render(cli=True) and "--overwrite" not in again.render()
    with pytest.raises(InputError, match="1 of 2 checkpoint"):
        again.raise_for_failure()
    redone = convert_all(release, out, jobs=2, overwrite=True)
    assert [i.status for i in redone.items] == ["converted", "converted"] and redone.jobs == 2
    redone.raise_for_failure()


def test_all_refuses_what_it_cannot_do(capsys, tmp_path):
    assert main(["tf2pt", str(fixture_dir("bert_pretrain")), str(tmp_path / "o"), "--all-steps"]) == 2
    assert "--all-steps goes with --all" in capsys.readouterr().err
    assert main(["tf2pt", str(tmp_path), str(tmp_path / "o"), "--all"]) == 2
    assert "no TensorFlow checkpoint under this directory" in capsys.readouterr().err


def test_the_largest_checkpoints_go_to_the_workers_first(release, tmp_path):
    from bertconv.batch import largest_first, source_bytes

    checkpoints = find_checkpoints(release, tmp_path / "out", all_steps=True)
    sizes = {c.name: source_bytes(c) for c in checkpoints}
    step = release / "run"
    assert sizes["run/model.ckpt-100"] == sum((step / f"model.ckpt-100{suffix}").stat().st_size
                                              for suffix in (".index", ".data-00000-of-00001"))
    assert sizes["uncased_L-2_H-32"] == sum(f.stat().st_size for f in (release / "uncased_L-2_H-32").iterdir())
    order = [checkpoints[i].name for i in largest_first(checkpoints, list(range(len(checkpoints))))]
    assert [sizes[name] for name in order] == sorted(sizes.values(), reverse=True)


def test_a_worker_whose_checkpoints_all_fail_ends_its_models_process_quietly(tmp_path, capfd):
    # its models' process is still importing torch when the worker is done: ended, nothing printed
    root = tmp_path / "release"
    broken = root / "broken"
    shutil.copytree(fixture_dir("bert_noheads"), broken)
    (broken / "bert_model.ckpt.data-00000-of-00001").unlink()
    rc = main(["tf2pt", str(root), str(tmp_path / "out"), "--all", "-j", "1"])
    captured = capfd.readouterr()
    assert rc == 2 and "data file is missing" in captured.out
    assert "Traceback" not in captured.err and "BrokenPipe" not in captured.err
