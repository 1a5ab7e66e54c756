"""ALBERT's tokenizer files: the released SentencePiece model, copied byte for byte, the settings
Hugging Face's ``AlbertTokenizer`` reads, and a ``tokenizer.json`` built from the model's pieces
and scores so that the tokenizer loads without the ``sentencepiece`` package."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ...errors import VocabError

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
    fast = write_sentencepiece_tokenizer_json(directory, model, do_lower_case=config["do_lower_case"],
                                              keep_accents=config["keep_accents"])
    return ["spiece.model", fast, "tokenizer_config.json", "special_tokens_map.json"]


# ---------------------------------------------------------------------------- tokenizer.json
# A SentencePiece model is a protobuf ModelProto. Reading the few fields a Unigram tokenizer needs
# takes a dozen lines over bertconv's wire-format reader; the alternative, the `sentencepiece`
# package, is a compiled dependency that many machines lack, and without it (or tokenizer.json)
# transformers cannot load an ALBERT tokenizer at all.
_PIECES, _TRAINER_SPEC, _NORMALIZER_SPEC = 1, 2, 3
_PIECE, _SCORE, _TYPE = 1, 2, 3
_UNK_ID, _BYTE_FALLBACK = 40, 35
_PRECOMPILED_CHARSMAP, _ADD_DUMMY_PREFIX = 2, 3


def read_sentencepiece(model: Path) -> dict:
    """Pieces with scores, the unknown piece's id, the normaliser's character map."""
    import struct

    from ...formats._wire import WireError, iter_fields

    try:
        data = Path(model).read_bytes()
        pieces: list[tuple[str, float]] = []
        spec = {"unk_id": 0, "byte_fallback": False, "charsmap": b"", "add_dummy_prefix": True}
        for number, _, value in iter_fields(data):
            if number == _PIECES:
                piece, score = "", 0.0
                for n, _, v in iter_fields(value):
                    if n == _PIECE:
                        piece = v.decode("utf-8")
                    elif n == _SCORE:
                        score = struct.unpack("<f", v.to_bytes(4, "little"))[0]
                pieces.append((piece, score))
            elif number == _TRAINER_SPEC:
                for n, _, v in iter_fields(value):
                    if n == _UNK_ID:
                        spec["unk_id"] = v
                    elif n == _BYTE_FALLBACK:
                        spec["byte_fallback"] = bool(v)
            elif number == _NORMALIZER_SPEC:
                for n, _, v in iter_fields(value):
                    if n == _PRECOMPILED_CHARSMAP:
                        spec["charsmap"] = v
                    elif n == _ADD_DUMMY_PREFIX:
                        spec["add_dummy_prefix"] = bool(v)
    except (OSError, WireError, UnicodeDecodeError, AttributeError) as e:
        raise VocabError(f"not a readable SentencePiece model ({e})", path=model) from None
    if not pieces or not 0 <= spec["unk_id"] < len(pieces):
        raise VocabError("the SentencePiece model holds no pieces or no unknown piece", path=model)
    return {"pieces": pieces, **spec}


def write_sentencepiece_tokenizer_json(directory: Path, model: Path, *, do_lower_case: bool = True,
                                       keep_accents: bool = False) -> str:
    """tokenizer.json for ALBERT: the Unigram model of ``model`` behind the normalisation that
    albert's tokenization.py applies (quotes unified, accents stripped, lower-cased)."""
    from tokenizers import Regex, Tokenizer, models, normalizers

    spm = read_sentencepiece(model)

    def score(piece: str, value: float) -> float:
        # albert's tokenization.py splits a piece like "1," into "1" + ","; a lower score makes
        # the Unigram model avoid such pieces the same way
        return value - 100 if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit() else value

    vocab = [(piece, score(piece, value)) for piece, value in spm["pieces"]]
    tok = Tokenizer(models.Unigram(vocab, unk_id=spm["unk_id"], byte_fallback=spm["byte_fallback"]))
    steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
    if not keep_accents:
        steps += [normalizers.NFKD(), normalizers.StripAccents()]
    if do_lower_case:
        steps.append(normalizers.Lowercase())
    if spm["charsmap"]:
        steps.append(normalizers.Precompiled(spm["charsmap"]))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tok.normalizer = normalizers.Sequence(steps)
    return save_unigram_tokenizer(tok, spm, model, directory, SPECIAL_TOKENS)


def save_unigram_tokenizer(tok, spm: dict, model: Path, directory: Path, special_tokens: dict[str, str]) -> str:
    """The steps every BERT-style SentencePiece tokenizer shares after its normalizer: the model's
    word-boundary marker, [CLS] A [SEP] B [SEP] with segment ids, the special tokens kept whole;
    saved as ``tokenizer.json`` (its name)."""
    from tokenizers import AddedToken, decoders, pre_tokenizers, processors

    scheme = "always" if spm["add_dummy_prefix"] else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=scheme)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme=scheme)
    index = {piece: i for i, (piece, _) in enumerate(spm["pieces"])}
    missing = [t for t in ("[CLS]", "[SEP]") if t not in index]
    if missing:
        raise VocabError(f"the SentencePiece model lacks {', '.join(missing)}", path=model)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", index["[CLS]"]), ("[SEP]", index["[SEP]"])])
    specials = [t for t in dict.fromkeys(special_tokens.values()) if t in index]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.save(str(directory / "tokenizer.json"))
    return "tokenizer.json"
