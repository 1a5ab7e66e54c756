"""BigBird's tokenizer files: the SentencePiece model pretrain.config names (``vocab_model_file``),
copied byte for byte as ``spiece.model`` (the name ``BigBirdTokenizer`` looks for), and the
special tokens run_pretraining.py uses ([CLS] and [SEP] around the text, [MASK], id 0 padding)."""
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
    return ["spiece.model", "tokenizer_config.json", "special_tokens_map.json"]
