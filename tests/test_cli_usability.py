"""What a new user meets in a first hour with the command: formats chosen from the target's name,
notes that agree with what was read, a summary before the tensor table, memory answers in plain
units, an option's help wherever it is, third-party libraries kept quiet, progress only on a
terminal, errors that name the API's own arguments."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import click
import pytest

from bertconv import progress
from bertconv.cli import QUIET_LIBRARIES, cli, main
from bertconv.conversion import convert
from bertconv.errors import OutputError

from .conftest import ROOT, fixture_dir


def run(capsys, *args):
    rc = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return rc, out, err


def run_module(*args, env=None):
    """``python -m bertconv ARGS`` in a process of its own, as a shell runs it."""
    environment = {k: v for k, v in os.environ.items() if k not in QUIET_LIBRARIES}
    environment["PYTHONPATH"] = str(ROOT) + os.pathsep + environment.get("PYTHONPATH", "")
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "bertconv", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=environment)


# 1. the target's name decides the format
def test_a_safetensors_target_is_one_file_unless_format_says_otherwise(capsys, tmp_path):
    rc, stdout, err = run(capsys, "tf2pt", fixture_dir("bert_pretrain"), tmp_path / "model.safetensors",
                          "--no-validate")
    assert rc == 0, err
    assert (tmp_path / "model.safetensors").is_file()
    rc, _, err = run(capsys, "tf2pt", fixture_dir("bert_pretrain"), tmp_path / "dir.safetensors", "--format", "hf",
                     "--no-validate")
    assert rc == 0 and (tmp_path / "dir.safetensors" / "config.json").is_file(), err
    # the API alike
    convert(fixture_dir("bert_pretrain"), tmp_path / "api.safetensors", validate=False)
    assert (tmp_path / "api.safetensors").is_file()
    help_text = " ".join(click.Context(cli.commands["tf2pt"]).get_help().split())
    assert "Default: safetensors when OUTPUT ends in .safetensors, else hf" in help_text


# 2. notes never contradict what was read
def test_a_stated_head_count_is_not_guessed_beside_it(capsys, tmp_path):
    rc, stdout, err = run(capsys, "inspect", fixture_dir("bert_pretrain"))
    assert rc == 0, err
    assert "num_attention_heads=4, from bert_config.json" in stdout
    assert "not in any shape; 1 if" not in stdout and "agrees with the weights" in stdout
    convert(fixture_dir("bert_pretrain"), tmp_path / "hf", validate=False)
    rc, stdout, err = run(capsys, "inspect", tmp_path / "hf")
    assert "num_attention_heads=4, from config.json" in stdout and "if the head size is" not in stdout


def test_a_keras_era_file_beside_its_config_takes_the_configs_head_count(capsys):
    # keras-bert's files record no head count; its bert_config.json does
    directory = fixture_dir("bert_pretrain").parent / "keras_era" / "keras_bert_pretrain_h5"
    if not (directory / "bert_weights.h5").is_file():
        pytest.skip("fixture keras_era/keras_bert_pretrain_h5 is missing: run fixtures/make_keras_bert_fixtures.py")
    rc, stdout, err = run(capsys, "inspect", directory)
    assert rc == 0, err
    assert "note: num_attention_heads=4, from bert_config.json (no shape records it)" in stdout
    assert "not in any shape" not in stdout


def test_without_a_config_the_head_count_is_still_a_stated_guess(copy_fixture):
    from bertconv import inspect_checkpoint

    src = copy_fixture("bert_pretrain")
    (src / "bert_config.json").unlink()
    assert any("num_attention_heads is not in any shape" in n for n in inspect_checkpoint(src).notes)


# 5. the summary first, every tensor on request
def test_inspect_prints_the_summary_and_lists_tensors_on_request(capsys):
    rc, stdout, err = run(capsys, "inspect", fixture_dir("bert_pretrain"))
    assert rc == 0, err
    assert stdout.splitlines()[0].startswith(f"{fixture_dir('bert_pretrain')}: tf-bundle, family bert")
    assert "bert/pooler/dense/kernel" not in stdout and "(46 tensors: --tensors lists them)" in stdout
    for flags in (["--tensors"], ["--sort", "size"], ["--filter", "bert/pooler/*"]):
        rc, listed, err = run(capsys, "inspect", fixture_dir("bert_pretrain"), *flags)
        assert rc == 0 and "bert/pooler/dense/kernel" in listed, (flags, err)
        assert listed.index("family bert") < listed.index("bert/pooler/dense/kernel")  # summary first


# 6. memory in plain words and honest units
def test_memory_answers_read_as_sentences(capsys):
    rc, stdout, err = run(capsys, "inspect", fixture_dir("bert_pretrain"), "--memory", "--gpu", "16GB",
                          "--seq-len", "16,32")
    assert rc == 0, err
    assert "largest batch that fits on 16GB (16.00 GiB): 656,309 sequences of 16 tokens; " in stdout
    assert "--gpu 16GB is read as 16 GiB (17,179,869,184 bytes)" in stdout
    assert "4 heads" in stdout
    rc, stdout, err = run(capsys, "inspect", fixture_dir("bert_pretrain"), "--memory", "--gpu", "H100")
    assert "1048576" not in stdout and "1,048,576" not in stdout and "H100 (80.00 GiB): fits" in stdout
    rc, stdout, err = run(capsys, "inspect", fixture_dir("bert_pretrain"), "--memory", "--gpu", "24GiB")
    assert "read as" not in stdout  # a GiB is what it says


def test_memory_says_one_head_and_a_search_that_stopped():
    from bertconv.memory import estimate
    from bertconv.memory.report import LARGEST_BATCH_SEARCHED, _batch_words, _count

    assert _count(1, "head") == "1 head" and _count(12, "head") == "12 heads"
    assert _batch_words(LARGEST_BATCH_SEARCHED) == "more than 1,073,741,824 sequences (searched no further)"
    assert _batch_words(0) == "none (not even one sequence)" and _batch_words(68) == "68 sequences"
    assert estimate(fixture_dir("bert_pretrain"), gpu="H100").largest_batch[40] < LARGEST_BATCH_SEARCHED


# 7. every option explained, every check stated
def test_every_option_of_every_command_has_help_and_descriptions_are_whole():
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("help",):
                assert param.help, (name, param.opts)
    listing = click.Context(cli, info_name="bertconv", max_content_width=80).get_help()
    assert "..." not in listing.split("Commands:")[1], listing
    assert "_BERTCONV_COMPLETE=bash_source bertconv" in " ".join(listing.split())


def test_diff_takes_an_rtol(capsys, tmp_path):
    out = tmp_path / "hf"
    convert(fixture_dir("bert_pretrain"), out, validate=False, dtype="float16")
    rc, stdout, _ = run(capsys, "diff", fixture_dir("bert_pretrain"), out, "--json")
    assert rc == 1 and json.loads(stdout)["rtol"] == 0
    rc, stdout, err = run(capsys, "diff", fixture_dir("bert_pretrain"), out, "--rtol", "1e-3", "--atol", "1e-6",
                          "--json")
    assert rc == 0, err
    assert json.loads(stdout)["rtol"] == 1e-3 and json.loads(stdout)["passed"] is True


def test_no_validate_says_nothing_was_checked_and_validate_has_quiet(capsys, tmp_path):
    src, out = fixture_dir("bert_pretrain"), tmp_path / "hf"
    rc, stdout, err = run(capsys, "tf2pt", src, out, "--no-validate")
    assert rc == 0, err
    assert stdout.splitlines()[-1].startswith("validation   none: --no-validate, so nothing was checked")
    rc, stdout, err = run(capsys, "validate", out, "--against", src, "-q")
    assert (rc, stdout, err) == (0, "", "")
    rc, stdout, err = run(capsys, "validate", out, "--against", src)
    assert "output" in stdout and "check" in stdout.split("\n\n")[1].splitlines()[1]


# 8. third-party libraries quiet unless --debug; 9. python -m bertconv
def test_tensorflow_and_transformers_print_nothing_of_their_own(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("transformers")
    src, out = fixture_dir("bert_pretrain"), tmp_path / "hf"
    convert(src, out, validate=False)
    done = run_module("validate", out, "--against", src, "--reference", "tf", "--with-transformers")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and "PASSED" in done.stdout


def test_main_leaves_the_environment_as_it_found_it(capsys, tmp_path):
    before = dict(os.environ)
    rc, _, err = run(capsys, "inspect", fixture_dir("bert_pretrain"))
    assert rc == 0, err
    assert dict(os.environ) == before


def test_python_dash_m_runs_the_command():
    done = run_module("--version")
    assert done.returncode == 0 and done.stdout.startswith("bertconv, version ")
    done = run_module("inspect", "no/such/checkpoint")
    assert done.returncode == 2 and done.stderr.startswith("bertconv: error:")


# 9. progress on a terminal only
class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal_and_never_with_quiet_or_json():
    assert progress.wanted(stream=_Terminal())
    assert not progress.wanted(stream=io.StringIO())
    assert not progress.wanted(quiet=True, stream=_Terminal()) and not progress.wanted(as_json=True,
                                                                                       stream=_Terminal())


def test_an_activity_is_drawn_only_once_it_has_lasted(monkeypatch):
    import threading

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    token = progress.enable(True)
    try:
        with progress.activity("quick"):
            pass
        assert terminal.getvalue() == ""
        monkeypatch.setattr(progress, "DELAY", 0.01)
        finished = threading.Event()
        with progress.activity("slow"):
            finished.wait(0.6)
        assert "slow: 00:00" in terminal.getvalue()
    finally:
        progress.reset(token)
    before = terminal.getvalue()
    with progress.activity("off"):
        finished.wait(0.05)
    assert terminal.getvalue() == before


def test_a_command_whose_stderr_is_not_a_terminal_shows_no_progress(capsys, tmp_path):
    rc, _, err = run(capsys, "tf2pt", fixture_dir("bert_pretrain"), tmp_path / "hf")
    assert rc == 0 and err == ""


# 10. the API's words in the API, the command's on the command line
def test_errors_name_the_argument_of_whoever_called(capsys, tmp_path):
    out = tmp_path / "hf"
    convert(fixture_dir("bert_noheads"), out, validate=False)
    with pytest.raises(OutputError) as refused:
        convert(fixture_dir("bert_noheads"), out, validate=False)
    assert "pass overwrite=True" in str(refused.value) and "--overwrite" not in str(refused.value)
    rc, _, err = run(capsys, "tf2pt", fixture_dir("bert_noheads"), out, "--no-validate")
    assert rc == 2 and "pass --overwrite to replace it" in err and "overwrite=True" not in err


# 11. a directory holding two kinds of checkpoint says which it read
def test_a_checkpoint_beside_a_savedmodel_folder_says_which_was_read(capsys, tmp_path):
    release = tmp_path / "release"
    shutil.copytree(fixture_dir("bert_pretrain"), release)
    shutil.copytree(fixture_dir("bert_pretrain").parent / "savedmodel_tf2", release / "exported")
    rc, stdout, err = run(capsys, "inspect", release)
    assert rc == 0, err
    assert (f"note: read the TensorFlow checkpoint bert_model.ckpt; this directory also holds the SavedModel "
            f"exported/, read by naming it ({release / 'exported'})") in stdout
    rc, stdout, err = run(capsys, "inspect", release / "exported")
    assert rc == 0 and "saved-model" in stdout.splitlines()[0]
