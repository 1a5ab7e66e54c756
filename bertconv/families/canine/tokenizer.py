"""CANINE's inputs are Unicode codepoints: there is no vocabulary to convert. What a converted
directory needs is what transformers' ``CanineTokenizer`` reads (its class and the special
codepoints of google-research/language's ``special_codepoints.py``), so that
``AutoTokenizer.from_pretrained(directory)`` splits text into codepoints the way the original's
input pipeline does. Generated validation inputs are made codepoints the same way.

The family states this through the ``sentencepiece`` capability, the contract's hook for a
tokenizer a family writes instead of WordPiece's: :meth:`CodepointTokenizer.find` names the
config file as the "model" (the tokenizer needs nothing from the files), and
:meth:`CodepointTokenizer.write` writes the two JSON files.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..base import SentencePieceTokenizer

#: special_codepoints.py: padding is codepoint 0; the others are private-use codepoints
PAD, CLS, SEP, BOS, MASK = 0, 0xE000, 0xE001, 0xE002, 0xE003
#: modeling.py's LARGEST_CODEPOINT: every codepoint up to it is an input id
LARGEST_CODEPOINT = 0x10FFFF


class CodepointTokenizer(SentencePieceTokenizer):
    model_names = ("canine_config.json", "model_config.json")

    def find(self, source) -> Path | None:
        return source.sidecar(*self.model_names)

    def write(self, directory: Path, model: Path, *, model_max_length: int) -> list[str]:
        special = {"bos_token": chr(CLS), "eos_token": chr(SEP), "sep_token": chr(SEP), "cls_token": chr(CLS),
                   "pad_token": chr(PAD), "mask_token": chr(MASK)}
        files = {"tokenizer_config.json": {"tokenizer_class": "CanineTokenizer", "model_max_length": model_max_length,
                                           "add_prefix_space": False, **special},
                 "special_tokens_map.json": special}
        for name, content in files.items():
            (Path(directory) / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
        return list(files)


def codepoint_inputs(inputs: dict) -> dict:
    """Generated inputs (ids drawn among codepoints, Google's [CLS] 101 and [SEP] 102 where the
    structure puts them) with CANINE's [CLS] and [SEP] codepoints in those places and padding 0."""
    import numpy as np

    ids = np.asarray(inputs["input_ids"]).copy()
    mask = np.asarray(inputs["attention_mask"])
    cls, sep = ids == 101, ids == 102
    ids[cls], ids[sep] = CLS, SEP
    ids[mask == 0] = PAD
    return {**inputs, "input_ids": ids}
