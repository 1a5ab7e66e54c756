"""The console script's check runs the converted model in a process of its own (bertconv.model_process),
which imports torch while the conversion and the reference run: its messages, its errors, its end,
and the same verdicts as a model run in the calling process."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from bertconv import model_process
from bertconv.errors import InputError
from bertconv.model_process import RunnerProcess, RunnerProcessFailed, receive, send

from .conftest import ROOT, fixture_dir

OWN_PROCESS = "peak RSS of the model's own process"


def console(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertconv", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_messages_carry_arrays_bit_for_bit_and_writable():
    arrays = {"input_ids": np.arange(12, dtype=np.int64).reshape(2, 6),
              "mlm_logits": np.random.default_rng(0).standard_normal((2, 6, 5)),
              "mask": np.array([True, False]), "empty": np.zeros((0, 3), np.float32)}
    channel = io.BytesIO()
    send(channel, {"job": "run", "n": 3}, arrays)
    channel.seek(0)
    header, received = receive(channel)
    assert header == {"job": "run", "n": 3}
    assert list(received) == list(arrays)
    for name, array in arrays.items():
        assert received[name].dtype == array.dtype and received[name].shape == array.shape
        assert received[name].tobytes() == array.tobytes()
        assert received[name].flags.writeable  # torch is handed them as they are
    with pytest.raises(EOFError):
        receive(channel)


def test_a_message_is_never_unpickled():
    channel = io.BytesIO(json.dumps({"arrays": [{"name": "x", "dtype": "|O", "shape": [1]}]}).encode() + b"\n"
                         + b"\x00" * 8)
    with pytest.raises(RunnerProcessFailed, match="unexpected dtype"):
        receive(channel)


def test_a_truncated_message_is_an_end_not_garbage():
    channel = io.BytesIO()
    send(channel, {}, {"x": np.ones(4)})
    channel = io.BytesIO(channel.getvalue()[:-3])
    with pytest.raises(EOFError, match="mid-message"):
        receive(channel)


def test_the_api_runs_the_model_in_its_own_process():
    # a program calling the API keeps torch once imported; only the console script sets this
    assert model_process.enabled is False
    assert model_process.wanted() is False


def test_an_error_in_the_model_process_is_bertconv_error_with_its_line(tmp_path):
    with RunnerProcess() as process:
        with pytest.raises(InputError) as raised:
            process.run(tmp_path / "nothing-here", "float32", "cpu", with_transformers=False,
                        architecture="BertModel", inputs={"input_ids": np.ones((1, 4), np.int64)})
        assert "nothing-here" in str(raised.value)
        # the process serves on after an error
        with pytest.raises(InputError):
            process.run(tmp_path / "nothing-here", "float32", "cpu", with_transformers=False,
                        architecture="BertModel", inputs={"input_ids": np.ones((1, 4), np.int64)})


def test_a_failed_run_ends_the_process_at_once_even_mid_import():
    process = RunnerProcess()
    child = process._process
    process.close(at_once=True)
    assert child.poll() is not None


def test_a_process_that_died_is_named_as_such(tmp_path):
    process = RunnerProcess()
    process._process.kill()
    process._process.wait()
    with pytest.raises(RunnerProcessFailed, match="ended"):
        process.run(tmp_path, "float32", "cpu", with_transformers=False, architecture="BertModel",
                    inputs={"input_ids": np.ones((1, 4), np.int64)})
    process.close()


def test_console_script_checks_in_the_models_own_process_with_the_same_verdict(tmp_path):
    from bertconv import convert, validate

    source = fixture_dir("bert_pretrain")
    converted = console("tf2pt", source, tmp_path / "out", "--json")
    assert converted.returncode == 0, converted.stderr
    check = json.loads(converted.stdout)["validation"]
    assert check["passed"] and check["runs"][0]["memory_measure"] == OWN_PROCESS
    validated = console("validate", tmp_path / "out", "--against", source, "--json")
    assert validated.returncode == 0, validated.stderr
    report = json.loads(validated.stdout)
    assert report["passed"] and report["runs"][0]["memory_measure"] == OWN_PROCESS

    # the same outputs compared, to the same figures, as a model run in this process
    here = validate(tmp_path / "out", against=source)
    assert here.runs[0].memory_measure == "process peak RSS"
    ours = {o["name"]: o for o in report["runs"][0]["outputs"]}
    assert set(ours) == {o.name for o in here.runs[0].outputs}
    for output in here.runs[0].outputs:
        assert ours[output.name]["max_abs"] == pytest.approx(output.max_abs, rel=0, abs=0)
    assert convert(source, tmp_path / "again").validation.passed


def test_console_script_refuses_a_failing_conversion_without_waiting_for_torch(tmp_path):
    (tmp_path / "bert_model.ckpt.index").write_bytes(b"not an index")
    failed = console("tf2pt", tmp_path, tmp_path / "out")
    assert failed.returncode == 2
    assert failed.stderr.startswith("bertconv: error:") and "Traceback" not in failed.stderr
    assert not (tmp_path / "out").exists()


def test_the_process_says_when_torch_is_imported():
    import time

    with RunnerProcess() as process:
        deadline = time.monotonic() + 120
        while process.importing() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process.importing()


KEPT_SCRIPT = """
import json, sys
from bertconv import convert, model_process
model_process.keep()
kept = model_process._kept
reports = [convert(sys.argv[1], sys.argv[2] + str(n)) for n in range(2)]
print(json.dumps({"same": model_process._kept is kept, "alive": kept.alive(), "importing": kept.importing(),
                  "torch_here": "torch" in sys.modules, "passed": [r.validation.passed for r in reports],
                  "measures": [r.validation.runs[0].memory_measure for r in reports]}))
"""


def test_a_kept_process_serves_every_check_of_a_worker_and_torch_stays_out_of_it(tmp_path):
    # as a batch's worker does: one process for its checks' models, kept from one conversion to the next
    done = subprocess.run([sys.executable, "-c", KEPT_SCRIPT, str(fixture_dir("bert_pretrain")), str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts == {"same": True, "alive": True, "importing": False, "torch_here": False,
                     "passed": [True, True], "measures": [OWN_PROCESS, OWN_PROCESS]}


def test_a_process_that_died_while_importing_is_not_taken_for_ready():
    process = RunnerProcess()
    process._process.kill()
    process._process.wait()
    assert process.importing()  # no error here: the job sent to it says that it ended
    process.close()
