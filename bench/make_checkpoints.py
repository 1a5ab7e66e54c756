"""Write BERT-Base- and BERT-Large-sized checkpoints in Google's release layout, with real TensorFlow,
for the benchmark in bench/run.py.

Each output directory holds what a Google release holds: ``bert_model.ckpt.{index,data-00000-of-00001,meta}``,
a ``checkpoint`` file, ``bert_config.json`` and a ``vocab.txt`` of ``vocab_size`` unique tokens. The
variables carry google-research/bert's exact names (modeling.py plus run_pretraining.py's MLM and NSP
heads) and are written by ``tf.compat.v1.train.Saver``, so the files are byte-for-byte what TensorFlow's
own code would leave, not an imitation of the format.

Weights are random: kernels and embeddings scaled by ``1/sqrt(fan_in)``, every LayerNorm gamma is
``1 + noise`` and every beta and bias is noise, so no tensor is a constant that a converter could get
right by accident.

Memory: each variable's initial value is a placeholder fed with one numpy array at a time, so the
graph holds no constants and only one numpy array exists at a time; the saver's write buffers
roughly double the variables' size at the end (the time and memory it takes: docs/performance.md).

    python bench/make_checkpoints.py                 # bench/work/bert-base and bench/work/bert-large
    python bench/make_checkpoints.py --sizes base    # only BERT-Base
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

WORK_DIR = Path(__file__).resolve().parent / "work"
CHECKPOINT_NAME = "bert_model.ckpt"

#: bert_config.json for Google's two released sizes (uncased English vocabulary size).
SIZES = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}
COMMON_CONFIG = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                 "initializer_range": 0.02, "max_position_embeddings": 512, "type_vocab_size": 2,
                 "vocab_size": 30522}

# Google's vocab.txt puts [PAD] first, then 99 [unusedN] slots, then these at 100..103.
SPECIAL_TOKENS_AFTER_UNUSED = ("[UNK]", "[CLS]", "[SEP]", "[MASK]")
UNUSED_SLOTS = 99


def bert_config(size: str) -> dict:
    return {**COMMON_CONFIG, **SIZES[size]}


def google_variable_shapes(config: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Every variable of a pretraining checkpoint, in the order modeling.py and run_pretraining.py
    create them, with Google's names and shapes (dense kernels are [in, out])."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    vocab = config["vocab_size"]

    def dense(scope, fan_in, fan_out):
        return [(f"{scope}/kernel", (fan_in, fan_out)), (f"{scope}/bias", (fan_out,))]

    def layer_norm(scope):
        return [(f"{scope}/LayerNorm/beta", (hidden,)), (f"{scope}/LayerNorm/gamma", (hidden,))]

    shapes = [("bert/embeddings/word_embeddings", (vocab, hidden)),
              ("bert/embeddings/token_type_embeddings", (config["type_vocab_size"], hidden)),
              ("bert/embeddings/position_embeddings", (config["max_position_embeddings"], hidden)),
              *layer_norm("bert/embeddings")]
    for i in range(config["num_hidden_layers"]):
        layer = f"bert/encoder/layer_{i}"
        for projection in ("query", "key", "value"):
            shapes += dense(f"{layer}/attention/self/{projection}", hidden, hidden)
        shapes += dense(f"{layer}/attention/output/dense", hidden, hidden)
        shapes += layer_norm(f"{layer}/attention/output")
        shapes += dense(f"{layer}/intermediate/dense", hidden, inter)
        shapes += dense(f"{layer}/output/dense", inter, hidden)
        shapes += layer_norm(f"{layer}/output")
    shapes += dense("bert/pooler/dense", hidden, hidden)
    shapes += dense("cls/predictions/transform/dense", hidden, hidden)
    shapes += layer_norm("cls/predictions/transform")
    shapes += [("cls/predictions/output_bias", (vocab,)),
               ("cls/seq_relationship/output_weights", (2, hidden)),  # [out, in], as Google stores it
               ("cls/seq_relationship/output_bias", (2,))]
    return shapes


def random_value(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """One variable's float32 value; depends only on (seed, name, shape), so reruns are identical."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    value = rng.standard_normal(shape, dtype=np.float32)
    leaf = name.rsplit("/", 1)[-1]
    if leaf == "gamma":
        value *= 0.1
        value += 1.0
    elif leaf in ("beta", "bias", "output_bias"):
        value *= 0.1
    elif leaf == "kernel":
        value *= 1.0 / math.sqrt(shape[0])
    else:  # embedding tables [rows, H] and output_weights [out, H]
        value *= 1.0 / math.sqrt(shape[1])
    return value


def synthetic_vocab(size: int) -> list[str]:
    """``size`` unique word pieces laid out like Google's uncased vocab.txt: [PAD], [unusedN],
    [UNK] [CLS] [SEP] [MASK], single characters, then made-up words and ``##`` continuations."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(UNUSED_SLOTS)] + list(SPECIAL_TOKENS_AFTER_UNUSED)
    tokens += list("!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~")
    tokens += ["##" + c for c in "0123456789abcdefghijklmnopqrstuvwxyz"]
    seen = set(tokens)
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    syllables = [c + v for c in consonants for v in vowels]  # 90 syllables
    n = 0
    while len(tokens) < size:
        # number n written in base len(syllables): every n gives a different word
        word, k = "", n
        while True:
            word = syllables[k % len(syllables)] + word
            k //= len(syllables)
            if k == 0:
                break
        n += 1
        for token in (word, "##" + word):
            if len(tokens) < size and token not in seen:
                seen.add(token)
                tokens.append(token)
    return tokens[:size]


def write_checkpoint(directory: Path, config: dict, seed: int) -> Path:
    """Write a pretraining checkpoint with Google's names into ``directory``; return its prefix."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / CHECKPOINT_NAME
    graph = tf.Graph()
    with graph.as_default():
        created = []
        for name, shape in google_variable_shapes(config):
            initial = tf1.placeholder(tf.float32, shape, name=name + "_initial_value")
            variable = tf1.get_variable(name, initializer=initial)
            if variable.op.name != name:
                raise RuntimeError(f"TensorFlow named the variable {variable.op.name!r}, wanted {name!r}")
            created.append((name, shape, variable, initial))
        saver = tf1.train.Saver(var_list=[v for _, _, v, _ in created], max_to_keep=1, save_relative_paths=True)
        graph.finalize()
        with tf1.Session(graph=graph) as session:
            for name, shape, variable, initial in created:
                session.run(variable.initializer, {initial: random_value(name, shape, seed)})
            saver.save(session, str(prefix))
    (directory / "bert_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n",
                                                encoding="utf-8")
    (directory / "vocab.txt").write_text("\n".join(synthetic_vocab(config["vocab_size"])) + "\n", encoding="utf-8")
    return prefix


def is_complete(directory: Path, config: dict) -> bool:
    """True when ``directory`` already holds a checkpoint written for this exact config."""
    config_file = directory / "bert_config.json"
    needed = [config_file, directory / "vocab.txt", directory / f"{CHECKPOINT_NAME}.index",
              directory / f"{CHECKPOINT_NAME}.data-00000-of-00001"]
    if not all(p.is_file() for p in needed):
        return False
    try:
        return json.loads(config_file.read_text(encoding="utf-8")) == config
    except ValueError:
        return False


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="base,large", help="comma-separated: base, large (default: both)")
    parser.add_argument("--out", type=Path, default=WORK_DIR, help=f"parent directory (default: {WORK_DIR})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rewrite checkpoints that already exist")
    args = parser.parse_args(argv)

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {sorted(SIZES)}")
    for size in sizes:
        directory = args.out / f"bert-{size}"
        config = bert_config(size)
        if is_complete(directory, config) and not args.force:
            print(f"{directory}: already there (use --force to rewrite)", file=sys.stderr)
            continue
        start = time.perf_counter()
        prefix = write_checkpoint(directory, config, args.seed)
        data_bytes = Path(f"{prefix}.data-00000-of-00001").stat().st_size
        print(f"{directory}: {data_bytes / 1e6:.0f} MB of weights in {time.perf_counter() - start:.1f} s, "
              f"peak RSS so far {peak_rss_mb():.0f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
