"""An independent tokenizer that follows google-research/bert's tokenization.py step by step
(BasicTokenizer, then greedy longest-match-first WordPiece), used as the oracle for the
tokenizer.json that bertconv writes."""
from __future__ import annotations

import unicodedata


def _is_whitespace(ch: str) -> bool:
    if ch in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # All non-letter/number ASCII counts as punctuation in the original, e.g. "^", "$", "`".
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokenize(text: str, do_lower_case: bool) -> list[str]:
    cleaned = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        cleaned.append(" " if _is_whitespace(ch) else ch)
    spaced = []
    for ch in "".join(cleaned):
        spaced.append(f" {ch} " if _is_cjk(ord(ch)) else ch)
    out = []
    for token in "".join(spaced).split():
        if do_lower_case:
            token = token.lower()
            token = "".join(c for c in unicodedata.normalize("NFD", token) if unicodedata.category(c) != "Mn")
        piece = []
        for ch in token:
            if _is_punctuation(ch):
                if piece:
                    out.append("".join(piece))
                    piece = []
                out.append(ch)
            else:
                piece.append(ch)
        if piece:
            out.append("".join(piece))
    return out


def wordpiece(token: str, vocab: set[str], max_chars: int = 100) -> list[str]:
    if len(token) > max_chars:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(token):
        end = len(token)
        found = None
        while start < end:
            candidate = token[start:end] if start == 0 else "##" + token[start:end]
            if candidate in vocab:
                found = candidate
                break
            end -= 1
        if found is None:
            return ["[UNK]"]
        pieces.append(found)
        start = end
    return pieces


def encode(text: str, vocab_tokens: list[str], do_lower_case: bool, pair: str | None = None) -> list[int]:
    index = {t: i for i, t in enumerate(vocab_tokens)}
    vocab = set(vocab_tokens)

    def pieces(s):
        return [p for w in basic_tokenize(s, do_lower_case) for p in wordpiece(w, vocab)]

    tokens = ["[CLS]"] + pieces(text) + ["[SEP]"]
    if pair is not None:
        tokens += pieces(pair) + ["[SEP]"]
    return [index[t] for t in tokens]
