"""BERT's tokenizer files in a Hugging Face directory: a WordPiece tokenizer over the checkpoint's
vocab.txt (also what ELECTRA ships)."""
from __future__ import annotations

import json
from pathlib import Path

from ...errors import VocabError
from ...vocab import SPECIAL_TOKENS, Vocab


def write_tokenizer_files(directory: Path, vocab: Vocab, *, do_lower_case: bool, model_max_length: int) -> list[str]:
    """Write vocab.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    index = vocab.index()
    # A vocabulary pruned for fine-tuning (bert4keras' keep_tokens) may drop [MASK]: the tokenizer
    # then has no mask token, rather than one whose id the embeddings lack. A whole vocab.txt
    # without it is not BERT's.
    special = {k: t for k, t in SPECIAL_TOKENS.items() if k != "mask_token" or t in index or vocab.kept_by is None}
    missing = [t for t in special.values() if t not in index]
    if missing:
        raise VocabError(f"lacks the special tokens {', '.join(missing)}", path=vocab.path,
                         hint="a BERT WordPiece vocabulary has [PAD] [UNK] [CLS] [SEP] (and [MASK])")
    (directory / "vocab.txt").write_text("\n".join(vocab.tokens) + "\n", encoding="utf-8")

    # The normaliser and pre-tokeniser reproduce google-research/bert's BasicTokenizer: control
    # characters dropped, whitespace unified, CJK characters split apart, accents stripped exactly
    # when lower-casing, then split on whitespace and punctuation; WordPiece caps words at 100 chars.
    tok = Tokenizer(models.WordPiece(vocab=index, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=do_lower_case)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = index["[CLS]"], index["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece(prefix="##")
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special.values()])
    tok.save(str(directory / "tokenizer.json"))

    tokenizer_config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": do_lower_case,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "do_basic_tokenize": True,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        **special,
        **({} if "mask_token" in special else {"mask_token": None}),
    }
    _write_json(directory / "tokenizer_config.json", tokenizer_config)
    _write_json(directory / "special_tokens_map.json", special)
    return ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
