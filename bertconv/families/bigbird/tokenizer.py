"""BigBird's tokenizer files: the SentencePiece model pretrain.config names (``vocab_model_file``),
copied byte for byte as ``spiece.model`` (the name ``BigBirdTokenizer`` looks for), and the
special tokens run_pretraining.py uses ([CLS] and [SEP] around the text, [MASK], id 0 padding), and a
``tokenizer.json`` built from the model's pieces and scores, so that the tokenizer loads without the
``sentencepiece`` package. bigbird/core tokenizes with SentencePiece as it is (tensorflow_text's
SentencepieceTokenizer): the model's own normalisation, no lower-casing, no other preprocessing."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ...errors import VocabError

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                  "sep_token": "[SEP]", "cls_token": "[CLS]", "mask_token": "[MASK]"}


def write_bigbird_tokenizer(directory: Path, model: Path, *, model_max_length: int) -> list[str]:
    try:
        shutil.copyfile(model, directory / "spiece.model")
    except OSError as e:
        raise VocabError(f"cannot copy the SentencePiece model: {e.strerror}", path=model) from None
    config = {"tokenizer_class": "BigBirdTokenizer", "model_max_length": model_max_length,
              "clean_up_tokenization_spaces": False, **SPECIAL_TOKENS}
    for name, data in (("tokenizer_config.json", config), ("special_tokens_map.json", SPECIAL_TOKENS)):
        (directory / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return ["spiece.model", write_tokenizer_json(directory, model), "tokenizer_config.json", "special_tokens_map.json"]


def write_tokenizer_json(directory: Path, model: Path) -> str:
    from tokenizers import Regex, Tokenizer, models, normalizers

    from ..albert.tokenizer import read_sentencepiece, save_unigram_tokenizer

    spm = read_sentencepiece(model)
    tok = Tokenizer(models.Unigram(spm["pieces"], unk_id=spm["unk_id"], byte_fallback=spm["byte_fallback"]))
    steps = [normalizers.Precompiled(spm["charsmap"])] if spm["charsmap"] else []
    # SentencePiece's remove_extra_whitespaces, on by default
    steps += [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()]
    tok.normalizer = normalizers.Sequence(steps)
    return save_unigram_tokenizer(tok, spm, model, directory, SPECIAL_TOKENS)
