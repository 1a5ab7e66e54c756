"""The directories tf2pt writes are real Hugging Face model directories: transformers loads them
offline, and what it computes matches TensorFlow's golden outputs; its tokenizer matches
google-research/bert's tokenization."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bertconv.conversion import convert

from . import wordpiece_reference
from .conftest import fixture_dir

transformers = pytest.importorskip("transformers", reason="transformers is the client that proves the output")
torch = pytest.importorskip("torch")

AUTO = {
    "BertForPreTraining": "AutoModelForPreTraining",
    "BertForSequenceClassification": "AutoModelForSequenceClassification",
    "BertForQuestionAnswering": "AutoModelForQuestionAnswering",
    "BertModel": "AutoModel",
}
TOLERANCE = 2e-5

MIXED_TEXT = [
    ("Hello world, the model plays!", None),
    ("Café résumé naïve façade jalapeño über", None),
    ("中国人 hello 日本 大学的 you", "paris, london; john's google: bert?"),
    ("unwanted running   \t played\u00a0day", "THE night was GOOD... (bad)"),
    ("xyzzy supercalifragilistic ## [ ] 12,345.67", "The second segment."),
]


@pytest.fixture(scope="module", params=["bert_pretrain", "bert_classifier", "bert_squad", "bert_adam", "bert_noheads"])
def converted(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "hf"
    report = convert(fixture_dir(request.param), out, validate=False)
    return request.param, out, report


def test_transformers_loads_offline_and_matches_tf(converted, monkeypatch):
    name, out, report = converted
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    auto = getattr(transformers, AUTO[report.architecture])
    model = auto.from_pretrained(out, local_files_only=True).eval()
    assert type(model).__name__ == report.architecture
    golden = np.load(fixture_dir(name) / "golden.npz")
    inputs = {k: torch.from_numpy(golden[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
    with torch.no_grad():
        result = model(**inputs, output_hidden_states=True)
    hidden = result.hidden_states
    got = {"embeddings": hidden[0]}
    for i in range(1, len(hidden)):
        got[f"layer_{i - 1}"] = hidden[i]
    if report.architecture == "BertForPreTraining":
        got["mlm_logits"] = result.prediction_logits
        got["nsp_logits"] = result.seq_relationship_logits
    elif report.architecture == "BertForSequenceClassification":
        got["classifier_logits"] = result.logits
    elif report.architecture == "BertForQuestionAnswering":
        got["span_logits"] = torch.stack([result.start_logits, result.end_logits], dim=-1)
    elif report.architecture == "BertModel":
        got["sequence_output"] = result.last_hidden_state
        got["pooled_output"] = result.pooler_output
    worst = {}
    for key, value in got.items():
        assert key in golden.files, key
        mask = golden["attention_mask"].astype(bool)
        want = golden[key]
        have = value.numpy()
        if have.ndim == 3 and key != "span_logits" or key == "span_logits":
            # padded positions are not defined outputs in either model
            have, want = have[mask], want[mask]
        worst[key] = float(np.max(np.abs(have - want)))
    assert max(worst.values()) <= TOLERANCE, worst


def test_tokenizer_matches_google_wordpiece(converted, monkeypatch):
    name, out, report = converted
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tokenizer.is_fast
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    do_lower = json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"]
    assert do_lower == (name != "bert_noheads")  # bert_noheads ships a cased vocabulary
    for text, pair in MIXED_TEXT:
        want = wordpiece_reference.encode(text, vocab, do_lower, pair)
        have = tokenizer(text, pair)["input_ids"] if pair else tokenizer(text)["input_ids"]
        assert have == want, (text, pair)
    # the slow tokenizer reads only vocab.txt + tokenizer_config.json: it must agree too
    if hasattr(transformers, "BertTokenizer"):
        for text, pair in MIXED_TEXT:
            enc = tokenizer(text, pair) if pair else tokenizer(text)
            assert enc["input_ids"][0] == vocab.index("[CLS]")
