"""ALBERT's tokenizer files: the released SentencePiece model, copied byte for byte (its pieces,
scores and normaliser rules are the tokenizer; nothing about it is re-derived), with the settings
Hugging Face's ``AlbertTokenizer`` reads. The ``sentencepiece`` package is not needed to write them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .errors import VocabError

#: ALBERT's special tokens, as its 30k-clean model defines them and run_classifier.py uses them
SPECIAL_TOKENS = {"bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "<unk>", "sep_token": "[SEP]",
                  "pad_token": "<pad>", "cls_token": "[CLS]", "mask_token": "[MASK]"}


def write_sentencepiece_files(directory: Path, model: Path, *, model_max_length: int) -> list[str]:
    """Copy ``model`` to ``spiece.model`` (the name AlbertTokenizer looks for) and write
    tokenizer_config.json and special_tokens_map.json."""
    try:
        shutil.copyfile(model, directory / "spiece.model")
    except OSError as e:
        raise VocabError(f"cannot copy the SentencePiece model: {e.strerror}", path=model) from None
    # albert's tokenization.py FullTokenizer with a SentencePiece model: lower-cased, accents stripped
    config = {"tokenizer_class": "AlbertTokenizer", "do_lower_case": True, "remove_space": True,
              "keep_accents": False, "model_max_length": model_max_length,
              "clean_up_tokenization_spaces": False, **SPECIAL_TOKENS}
    for name, data in (("tokenizer_config.json", config), ("special_tokens_map.json", SPECIAL_TOKENS)):
        (directory / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return ["spiece.model", "tokenizer_config.json", "special_tokens_map.json"]
