"""A BERT-Base-sized tf-models-official TF Hub export (with_mlm), for bench/run.py's SavedModel
cases: the code path of fixtures/make_savedmodel_fixtures.py at Google's Base sizes, written to
bench/work/savedmodel-base. Needs the tf-models-official environment described in that fixture
script's docstring (tf-models-official 2.20 installed --no-deps beside tensorflow-cpu 2.21 and
tf-keras 2.21); run it with that environment's python from the repository root, after
bench/make_checkpoints.py (its vocabulary is the Base checkpoint's)."""
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
import tf_keras
from official.modeling import tf_utils
from official.nlp.configs import encoders
from official.nlp.modeling import layers, models
from official.nlp.tools import export_tfhub_lib

WORK = Path(__file__).resolve().parent / "work"
OUT = WORK / "savedmodel-base"
VOCAB = WORK / "bert-base" / "vocab.txt"


def main():
    started = time.perf_counter()
    vocab_size = len(VOCAB.read_text(encoding="utf-8").splitlines())
    cfg = encoders.EncoderConfig(type="bert", bert=encoders.BertEncoderConfig(
        vocab_size=vocab_size, hidden_size=768, num_layers=12, num_attention_heads=12, hidden_activation="gelu",
        intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2))
    encoder = encoders.build_encoder(cfg)
    head = layers.ClassificationHead(inner_dim=768, num_classes=2, dropout_rate=0.1, name="next_sentence")
    pretrainer = models.BertPretrainerV2(encoder_network=encoder, mlm_activation=tf_utils.get_activation("gelu"),
                                         mlm_initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02),
                                         classification_heads=[head])
    dummy = {k: tf.zeros((1, 8), tf.int32) for k in ("input_word_ids", "input_mask", "input_type_ids")}
    pretrainer(dict(dummy, masked_lm_positions=tf.zeros((1, 2), tf.int32)))
    rng = np.random.default_rng(7)
    seen = set()
    for variable in pretrainer.variables:  # not the initial zeros and ones: random values throughout
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        value = rng.standard_normal(tuple(variable.shape), dtype=np.float32) * np.float32(0.05)
        variable.assign(value)
    print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        prefix = tf.train.Checkpoint(**pretrainer.checkpoint_items).save(os.path.join(scratch, "bert_model.ckpt"))
        print(f"saved in {time.perf_counter() - started:.0f} s", flush=True)
        export_tfhub_lib.export_model(str(OUT), encoder_config=cfg, model_checkpoint_path=prefix, with_mlm=True,
                                      vocab_file=str(VOCAB), do_lower_case=True)
    print(f"exported in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
