"""The inputs both forward passes run on: generated ones shaped like real ones, or a file of text
tokenized with the converted model's own tokenizer."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from ..config import BertConfig
from ..errors import InputError

INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask")

# -------------------------------------------------------------------------------------- inputs


def _special_ids(vocab_path: Path | None) -> dict[str, int]:
    if vocab_path is None or not vocab_path.is_file():
        return {}
    try:
        tokens = [t.strip() for t in vocab_path.read_text(encoding="utf-8").split("\n")]
    except (OSError, UnicodeDecodeError):
        return {}
    index = {t.strip(): i for i, t in enumerate(tokens)}
    named = _special_tokens(vocab_path.parent)
    found = {}
    for key, token in (("cls_id", named.get("cls_token", "[CLS]")), ("sep_id", named.get("sep_token", "[SEP]")),
                       ("pad_id", named.get("pad_token", "[PAD]"))):
        if token in index:
            found[key] = index[token]
    return found


def _special_tokens(directory: Path) -> dict:
    """The special tokens a converted directory's tokenizer names (special_tokens_map.json; a
    family's may not be BERT's [CLS]...), empty where it names none."""
    with contextlib.suppress(OSError, ValueError):
        named = json.loads((directory / "special_tokens_map.json").read_text(encoding="utf-8"))
        if isinstance(named, dict):
            return {k: v for k, v in named.items() if isinstance(v, str)}
    return {}


def make_validation_inputs(config: BertConfig, batch: int, seq_len: int, seed: int,
                           vocab_path: Path | None = None) -> dict[str, np.ndarray]:
    """Deterministic inputs shaped like real ones ([CLS] first, [SEP]s, two segments, padding).

    The default check (``tf2pt``, ``validate``, ``--with-transformers``) runs 2 rows of 16 tokens:
    few, because a converted model's weights do the same to every token, so a wrong mapping shows
    on the first tokens that read the wrong weight, and what it must cover is which weights are read
    and which code paths run, not how many tokens:

    - every weight of every layer is read by any token (each dense kernel, bias and LayerNorm), and
      a square kernel transposed or two projections swapped (query for key) give other values for
      any input that is not symmetric in them; non-square ones fail on their shapes;
    - every attention head: the heads split each token's projections, so every token exercises
      every head, and a head permuted or mis-split changes every context vector;
    - padding: the second row is padded (``make_inputs``), so the attention mask's adder and its
      constant are used; the first row is not, so no position is padding everywhere;
    - both segments in every row (a [SEP] ends the first, type 1 follows): both rows of the token
      type table are read, so a swapped or zeroed segment table shows;
    - positions 0 to ``seq_len - 1``: a table shifted, reversed or read from the wrong tensor shows
      from position 0 on; 16 positions are more than the [CLS], [SEP] and padding positions, so a
      mapping that is right only where those tokens sit still fails (rows past ``seq_len`` are not
      read: a longer ``--seq-len`` reads them);
    - the nonlinearities at many points: 2x16 tokens give 32 x intermediate_size GELU inputs per
      layer, enough of them where the tanh and erf forms differ by more than float32 rounding; a
      LayerNorm epsilon off by 7 orders of magnitude shows in the embeddings' normalisation;
    - the heads: the MLM decoder multiplies by every row of the word table (tied), the pooler and
      NSP read the first token of each row, the span head every token.

    The suite breaks a conversion in each of these ways and checks that this input fails it
    (``tests/test_validate.py``, ``WRONG_MAPPINGS``).
    """
    if batch < 1 or seq_len < 1:
        raise InputError(f"batch and seq_len must be at least 1, got {batch} and {seq_len}")
    if seq_len > config.max_position_embeddings:
        raise InputError(f"seq_len {seq_len} exceeds the model's max_position_embeddings "
                         f"{config.max_position_embeddings}")
    ids = {k: v for k, v in _special_ids(vocab_path).items() if v < config.vocab_size}
    return make_inputs(config.vocab_size, batch, seq_len, seed, config.type_vocab_size, **ids)


def describe_inputs(inputs, config: BertConfig) -> dict:
    """What the inputs exercise, for the report: their shape, how many tokens are real (not
    padding), how many rows are padded, which token types occur among the real tokens and which
    rows of the position table they read."""
    mask = np.asarray(inputs["attention_mask"])
    types = np.asarray(inputs.get("token_type_ids", np.zeros_like(mask)))
    batch, seq_len = mask.shape
    return {"batch": int(batch), "seq_len": int(seq_len), "tokens": int(mask.sum()),
            "padded_rows": int(np.sum(mask.min(axis=1) == 0)),
            "segments": sorted(int(t) for t in np.unique(types[mask != 0])),
            "positions": f"0-{seq_len - 1} of {config.max_position_embeddings}"}


def text_inputs(path: str | Path, directory: Path | None, config: BertConfig) -> dict[str, np.ndarray]:
    """Tokenize a file of lines (a tab separates the two texts of a pair) with the converted
    model's own tokenizer files."""
    path = Path(path)
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path=path) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=path) from None
    if not lines:
        raise InputError("holds no text", path=path)
    if directory is None:
        raise InputError("--text needs the tokenizer files of a converted directory", path=path,
                         hint="validate a Hugging Face directory, or use generated inputs")
    tokenizer = _tokenizer(directory)
    tokenizer.enable_truncation(max_length=config.max_position_embeddings)
    pad_token = _special_tokens(directory).get("pad_token", "[PAD]")
    pad_id = tokenizer.token_to_id(pad_token)
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=pad_token)
    pairs = [tuple(line.split("\t", 1)) if "\t" in line else line for line in lines]
    encodings = tokenizer.encode_batch(pairs)
    as_array = lambda attr: np.array([getattr(e, attr) for e in encodings], dtype=np.int64)  # noqa: E731
    inputs = {"input_ids": as_array("ids"), "token_type_ids": as_array("type_ids"),
              "attention_mask": as_array("attention_mask")}
    if inputs["input_ids"].max() >= config.vocab_size:
        raise InputError("the tokenizer produced ids beyond the model's vocab_size", path=directory)
    return inputs


def _tokenizer(directory: Path):
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    if (directory / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(directory / "tokenizer.json"))
    vocab = directory / "vocab.txt"
    if not vocab.is_file():
        raise InputError("no tokenizer.json or vocab.txt to tokenize --text with", path=directory)
    lower = True
    settings = directory / "tokenizer_config.json"
    if settings.is_file():
        with contextlib.suppress(OSError, ValueError):
            lower = bool(json.loads(settings.read_text(encoding="utf-8")).get("do_lower_case", True))
    return BertWordPieceTokenizer(str(vocab), lowercase=lower)


def make_inputs(vocab_size: int, batch: int, seq_len: int, seed: int, type_vocab_size: int = 2, *,
                cls_id: int | None = None, sep_id: int | None = None,
                pad_id: int = 0) -> dict[str, np.ndarray]:
    """Deterministic int64 inputs shaped like real ones: ``[CLS] a... [SEP] b... [SEP] [PAD]...``.

    Row 0 fills the whole sequence; later rows are padded. With ``type_vocab_size >= 2`` the
    second segment has token type 1. ``cls_id``/``sep_id`` default to Google's vocabularies
    (101/102) when the vocabulary is that large, else to 1/2. Word ids are drawn after the
    special tokens.
    """
    if vocab_size < 4 or batch < 1 or seq_len < 1:
        raise InputError("make_inputs needs vocab_size >= 4, batch >= 1, seq_len >= 1")
    if cls_id is None:
        cls_id = 101 if vocab_size > 110 else 1
    if sep_id is None:
        sep_id = 102 if vocab_size > 110 else 2
    first_word = max(cls_id, sep_id, pad_id) + 2
    if first_word >= vocab_size:
        first_word = 1
    rng = np.random.default_rng(seed)
    input_ids = np.full((batch, seq_len), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((batch, seq_len), dtype=np.int64)
    attention_mask = np.zeros((batch, seq_len), dtype=np.int64)
    for row in range(batch):
        length = seq_len if row == 0 or seq_len < 4 else int(rng.integers(max(3, seq_len // 2), seq_len))
        words = rng.integers(first_word, vocab_size, size=length)
        input_ids[row, :length] = words
        input_ids[row, 0] = cls_id
        input_ids[row, length - 1] = sep_id
        attention_mask[row, :length] = 1
        if length >= 5 and type_vocab_size >= 2:
            first_end = int(rng.integers(2, length - 2))  # index of the first [SEP]
            input_ids[row, first_end] = sep_id
            token_type_ids[row, first_end + 1:length] = 1
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
