"""A converted directory explains itself: its README.md model card (Hugging Face's front matter,
the source files with their SHA-256, the command, how it was read, every note, the check's result),
which ``inspect`` reads back; and ``--torch-hub``'s hubconf.py, loaded by ``torch.hub.load``."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from bertconv.cli import main
from bertconv.conversion import convert
from bertconv.model_card import pipeline_tag, read_provenance

from .conftest import FIXTURES, ROOT, fixture_dir


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_card_states_source_command_reading_and_validation(capsys, tmp_path):
    src, out = fixture_dir("bert_classifier"), tmp_path / "hf"
    assert main(["tf2pt", str(src), str(out), "--labels", "neg,neu,pos"]) == 0
    stdout = capsys.readouterr().out
    assert "README.md" in stdout  # listed among the files written
    card = (out / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert front.splitlines() == ["library_name: transformers", "pipeline_tag: text-classification", "tags:",
                                  "- bertconv", "- converted-from-tensorflow", "- bert"]
    for name in ("bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001", "vocab.txt", "bert_config.json"):
        assert f"| `{name}` | {(src / name).stat().st_size:,} | `{sha256(src / name)}` |" in body, name
    assert "golden.npz" not in body and "`checkpoint`" not in body  # only what was read
    assert f"`bertconv tf2pt {src} {out} --labels neg,neu,pos`" in body
    assert "- family `bert`, layout `google_bert`" in body and "4 attention heads" in body
    assert "dropped: 83 training-state tensor(s) (adam_m 41, adam_v 41, global_step 1)" in body
    assert "- do_lower_case=True (vocab.txt has no capitalised word pieces" in body  # every note
    assert "Passed against bertconv's bert reference (NumPy, float64) over " + str(src) in body
    assert "| classifier_logits | " in body

    facts = read_provenance(out)
    report_lines = [line for line in stdout.splitlines() if line.startswith("validation")]
    worst = max(o["max_abs"] for o in facts["validation"]["runs"][0]["outputs"])
    assert f"max abs {worst:.2e}" in report_lines[0]
    assert facts["architecture"] == "BertForSequenceClassification" and facts["num_attention_heads"] == 4
    assert [f["sha256"] for f in facts["source_files"]] == [sha256(src / f["file"]) for f in facts["source_files"]]
    assert facts["validation"]["passed"] is True and facts["validation"]["runs"][0]["dtype"] == "float32"


def test_an_unchecked_conversion_says_so_in_its_card(tmp_path):
    out = tmp_path / "hf"
    report = convert(fixture_dir("bert_pretrain"), out, validate=False)
    card = (out / "README.md").read_text()
    assert "Not checked: converted with `--no-validate`." in card and "pipeline_tag: fill-mask" in card
    assert "the Python API (`bertconv.convert`)" in card
    assert report.files[-1] == "README.md" and read_provenance(out)["validation"] is None


def test_a_savedmodel_card_names_the_files_inside_it(tmp_path):
    src, out = fixture_dir("bert_pretrain").parent / "savedmodel_tf2", tmp_path / "hf"
    convert(src, out, validate=False)
    names = [f["file"] for f in read_provenance(out)["source_files"]]
    assert "saved_model.pb" in names and "variables/variables.index" in names


def test_pipeline_tags_follow_the_class():
    assert [pipeline_tag(a) for a in ("BertModel", "BertForMaskedLM", "BertForPreTraining",
                                      "BertForQuestionAnswering", "AlbertForSequenceClassification")] == \
        ["feature-extraction", "fill-mask", "fill-mask", "question-answering", "text-classification"]


def test_inspect_of_a_converted_directory_shows_its_provenance(capsys, tmp_path):
    src, out = fixture_dir("bert_pretrain"), tmp_path / "hf"
    assert main(["tf2pt", str(src), str(out), "-q"]) == 0
    assert main(["inspect", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert f"converted by bertconv 0.1.0 from {src} (bert, layout google_bert)" in stdout
    assert f"command: bertconv tf2pt {src} {out} -q" in stdout
    index = src / "bert_model.ckpt.index"
    assert f"bert_model.ckpt.index ({index.stat().st_size:,} B, sha256 {sha256(index)[:12]}...)" in stdout
    assert "validation: float32 on cpu: passed; max abs" in stdout
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"]["source"] == str(src)
    assert main(["inspect", str(src), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"] is None


def test_torch_hub_loads_the_directory_in_a_fresh_process(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "hf"
    report = convert(fixture_dir("bert_classifier"), out, validate=False, torch_hub=True, labels=["a", "b", "c"])
    assert "hubconf.py" in report.files
    script = (
        "import sys, torch\n"
        "from safetensors.torch import load_file\n"
        "directory = sys.argv[1]\n"
        "model = torch.hub.load(directory, 'model', source='local')\n"
        "tokenizer = torch.hub.load(directory, 'tokenizer', source='local')\n"
        "assert type(model).__name__ == 'BertForSequenceClassification', type(model)\n"
        "assert model.config.id2label == {0: 'a', 1: 'b', 2: 'c'}\n"
        "stored = load_file(directory + '/model.safetensors')\n"
        "weights = model.state_dict()\n"
        "assert all(torch.equal(weights[k], v) for k, v in stored.items() if k in weights)\n"
        "ids = tokenizer('hello world')['input_ids']\n"
        "assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id\n"
        "print(len(stored))\n")
    environment = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    done = subprocess.run([sys.executable, "-c", script, str(out)], cwd=tmp_path, capture_output=True, text=True,
                          env=environment)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == report.tensors_written


def test_torch_hub_needs_a_directory(tmp_path, capsys):
    assert main(["tf2pt", str(fixture_dir("bert_pretrain")), str(tmp_path / "m.safetensors"), "--torch-hub"]) == 2
    assert "name a directory as the output (--format hf), or leave --torch-hub out" in capsys.readouterr().err


@pytest.mark.parametrize("fixture, load", [
    # one family, both kinds: transformers' own class, and the family's own modeling code
    ("bigbird_pretrain", "transformers.BigBirdForPreTraining.from_pretrained(\"path/to/this/directory\")"),
    ("bigbird_sparse", "transformers.AutoModelForPreTraining.from_pretrained(\"path/to/this/directory\", "
                       "trust_remote_code=True)"),
    ("mobilebert_opt", "transformers.MobileBertForPreTraining.from_pretrained(\"path/to/this/directory\")"),
])
def test_the_card_loads_the_class_the_directory_holds(fixture, load, tmp_path):
    out = tmp_path / "out"
    convert(FIXTURES / fixture, out, validate=False, torch_hub=True)
    config = json.loads((out / "config.json").read_text())
    assert ("trust_remote_code" in load) == ("auto_map" in config)
    assert f"model = {load}" in (out / "README.md").read_text()
    assert load.removeprefix("transformers.").replace('"path/to/this/directory"', "_HERE").removesuffix(")") \
        in (out / "hubconf.py").read_text()
