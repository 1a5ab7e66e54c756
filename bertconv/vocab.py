"""WordPiece vocabularies: checking ``vocab.txt`` against the embeddings, inferring casing, and
writing the tokenizer files of a Hugging Face directory."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import VocabError

SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                  "cls_token": "[CLS]", "mask_token": "[MASK]"}


@dataclass(frozen=True)
class WordPieceConvention:
    """How a family's releases ship their WordPiece vocabulary and how its models read it: the
    file's names, the special tokens, the segment id of the first token. The defaults are
    google-research/bert's."""

    #: the vocabulary's file names beside a checkpoint, in order of preference
    file_names: tuple[str, ...] = ("vocab.txt",)
    #: Hugging Face's name of each special token -> the token
    special_tokens: dict[str, str] = field(default_factory=lambda: dict(SPECIAL_TOKENS))
    #: the token type id of the classification token (the other tokens of the first segment: 0)
    cls_token_type_id: int = 0
    #: the longest word the original's WordPiece splits; longer words are the unknown token
    max_input_chars_per_word: int = 100
    #: tokenizer_config.json's class: one that keeps tokenizer.json's model and template as written
    tokenizer_class: str = "BertTokenizer"


#: google-research/bert's
BERT_WORDPIECE = WordPieceConvention()
#: a line (token) with an ASCII capital that is not a bracketed special token like [CLS]
_CAPITALISED_PIECE = re.compile(r"^(?!\[[^\]\n]+\]$)[^\n]*[A-Z][^\n]*$", re.M)


@dataclass
class Vocab:
    path: Path
    tokens: list[str]
    #: the keep_tokens file this vocabulary was pruned to (None: vocab.txt as it is)
    kept_by: Path | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def index(self) -> dict[str, int]:
        return {tok: i for i, tok in enumerate(self.tokens)}

    def capitalised_pieces(self) -> int:
        """Word pieces with an ASCII capital, special tokens aside: an uncased vocab has none."""
        # One regex pass over the joined vocabulary: a per-token Python loop is far slower on 30k tokens.
        text = "\n".join(self.tokens)
        return len(_CAPITALISED_PIECE.findall(text))


def load_vocab(path: str | Path) -> Vocab:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise VocabError(f"cannot read: {e.strerror}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VocabError(f"not UTF-8 text (byte {e.start})", path=path) from None
    # google-research/bert's load_vocab reads one token per "\n"-ended line and strips it; Python's
    # splitlines() would also split on U+2028, U+0085, form feeds... which can be inside tokens
    tokens = [line.strip() for line in text.split("\n")]
    while tokens and tokens[-1] == "":
        tokens.pop()
    if not tokens:
        raise VocabError("the vocabulary is empty", path=path)
    if len(set(tokens)) != len(tokens):
        seen: dict[str, int] = {}
        dupes = []
        for i, tok in enumerate(tokens):
            if tok in seen:
                dupes.append(f"{tok!r} (lines {seen[tok] + 1} and {i + 1})")
            else:
                seen[tok] = i
        shown = ", ".join(dupes[:5]) + (f" and {len(dupes) - 5} more" if len(dupes) > 5 else "")
        raise VocabError(f"duplicate tokens: {shown}", path=path,
                         hint="each token must appear once; ids are line numbers")
    return Vocab(path, tokens)


def check_vocab_size(vocab: Vocab, vocab_size: int) -> None:
    if len(vocab) != vocab_size:
        raise VocabError(f"has {len(vocab)} tokens but the word embeddings have {vocab_size} rows",
                         path=vocab.path, hint="use the vocab.txt released with this checkpoint, or --vocab")


def prune_vocab(vocab: Vocab, keep_tokens: str | Path, rows: int) -> Vocab:
    """The vocabulary of a model whose embedding rows were cut to ``keep_tokens`` (bert4keras'
    ``load_vocab(simplified=True)``): row ``i`` is line ``keep_tokens[i]`` of vocab.txt.
    ``keep_tokens`` is a JSON file holding that list of line numbers."""
    import json

    path = Path(keep_tokens)
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise VocabError(f"cannot read: {e.strerror}", path=path) from None
    except ValueError as e:
        raise VocabError(f"not JSON ({e})", path=path, hint="a JSON list of token ids, e.g. [0, 100, 101, ...]") from None
    if not isinstance(kept, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in kept):
        raise VocabError("is not a list of token ids", path=path, hint="a JSON list of token ids, e.g. [0, 100, 101, ...]")
    if len(kept) != rows:
        raise VocabError(f"keeps {len(kept)} tokens but the word embeddings have {rows} rows", path=path,
                         hint="use the keep_tokens list the model was built with")
    outside = [i for i in kept if not 0 <= i < len(vocab)]
    if outside:
        raise VocabError(f"names token ids outside the {len(vocab)} lines of {vocab.path.name}: {outside[:5]}", path=path,
                         hint="use the vocab.txt the keep_tokens list was made from, or --vocab")
    if len(set(kept)) != len(kept):
        raise VocabError("keeps a token id twice", path=path, hint="use the keep_tokens list the model was built with")
    return Vocab(vocab.path, [vocab.tokens[i] for i in kept], kept_by=path)


def infer_lower_case(vocab: Vocab | None, names: list[str]) -> tuple[bool, str]:
    """(do_lower_case, why). Casing is not stored in the config: read it from the release's name,
    else from the vocabulary (an uncased vocabulary has no capitalised word pieces)."""
    # The innermost path component speaks first: /models/uncased_vs_cased/cased_L-12_H-768 is cased.
    components = [part for name in names for part in reversed(Path(name).parts)]
    for part in components:
        low = part.lower()
        if "uncased" in low:
            return True, f"'uncased' in {part!r}"
        if re.search(r"(^|[^a-z])cased", low):
            return False, f"'cased' in {part!r}"
    if vocab is None:
        return True, "no vocabulary; assumed uncased"
    caps = vocab.capitalised_pieces()
    if caps:
        return False, f"vocab.txt has {caps} capitalised word pieces"
    return True, "vocab.txt has no capitalised word pieces"


def write_tokenizer_files(directory: Path, vocab: Vocab, *, do_lower_case: bool, model_max_length: int,
                          convention: WordPieceConvention = BERT_WORDPIECE) -> list[str]:
    """Write vocab.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    index = vocab.index()
    # A vocabulary pruned for fine-tuning (bert4keras' keep_tokens) may drop [MASK]: the tokenizer
    # then has no mask token, rather than one whose id the embeddings lack. A whole vocab.txt
    # without it is not BERT's.
    special = {k: t for k, t in convention.special_tokens.items()
               if k != "mask_token" or t in index or vocab.kept_by is None}
    missing = [t for t in special.values() if t not in index]
    if missing:
        required = " ".join(t for k, t in convention.special_tokens.items() if k != "mask_token")
        raise VocabError(f"lacks the special tokens {', '.join(missing)}", path=vocab.path,
                         hint=f"this family's WordPiece vocabulary has {required} (and "
                              f"{convention.special_tokens['mask_token']})")
    (directory / "vocab.txt").write_text("\n".join(vocab.tokens) + "\n", encoding="utf-8")

    # The normaliser and pre-tokeniser reproduce google-research/bert's BasicTokenizer: control
    # characters dropped, whitespace unified, CJK characters split apart, accents stripped exactly
    # when lower-casing, then split on whitespace and punctuation.
    unk, cls, sep = special["unk_token"], special["cls_token"], special["sep_token"]
    tok = Tokenizer(models.WordPiece(vocab=index, unk_token=unk,
                                     max_input_chars_per_word=convention.max_input_chars_per_word))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=do_lower_case)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls}:{convention.cls_token_type_id} $A:0 {sep}:0",
        pair=f"{cls}:{convention.cls_token_type_id} $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, index[cls]), (sep, index[sep])])
    tok.decoder = decoders.WordPiece(prefix="##")
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special.values()])
    tok.save(str(directory / "tokenizer.json"))

    tokenizer_config = {
        "tokenizer_class": convention.tokenizer_class,
        "do_lower_case": do_lower_case,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "do_basic_tokenize": True,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        **special,
        **({} if "mask_token" in special else {"mask_token": None}),
        # the models read token types: transformers 5's generic class returns none unless told
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
    }
    _write_json(directory / "tokenizer_config.json", tokenizer_config)
    _write_json(directory / "special_tokens_map.json", special)
    return ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
