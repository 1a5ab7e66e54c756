"""The CANINE family (google-research/language ``language/canine``): a character-level encoder
over Unicode codepoints (hash embeddings, a local-attention layer over characters, a strided
convolution down to molecules, the deep stack, an upsampling convolution and a last layer over
characters). Releases are ``canine_config.json`` (CanineModelConfig's keys; the TyDi QA README
calls it ``model_config.json``) beside a TF1 checkpoint; TyDi QA fine-tunes add the span and
answer-type heads (``squad`` here).

A converted directory carries CANINE's own modeling code (``model.py``, written by
:mod:`bertconv.families.remote_code`) and loads with ``trust_remote_code=True``: transformers 5's
``Canine*`` computes something else than the original wherever a local-attention window holds only
padding (model.py's docstring says how that reaches real characters), and has no answer-type head.
The float64 reference is ``reference.py``. There is no vocabulary: the tokenizer files are what
transformers' ``CanineTokenizer`` needs (its special codepoints, ``tokenizer.py``). The way back
(:class:`CanineFormat`) writes the release's checkpoint and canine_config.json.
"""
from __future__ import annotations

import re

from ...errors import ConfigError
from ..base import Family, MemoryStructure, OriginalFormat
from ..remote_code import RemoteCode
from .layouts import ANSWER_TYPES, HEAD_TENSORS, LAYOUTS, MAX_HASH_FUNCTIONS, bind_to_config
from .tokenizer import LARGEST_CODEPOINT, CodepointTokenizer

#: the estimate's components (bertconv.memory.estimate's names; families do not import it)
HIDDEN, MASK = "activations: hidden states", "activations: attention mask"
QKV, SCORES = "activations: attention q/k/v", "activations: attention scores and probabilities"
ATTENTION_OUT = "activations: attention output"

#: CanineModelConfig's fields and defaults (modeling.py): a key the file leaves out is this
ORIGINAL_DEFAULTS = {"downsampling_rate": 4, "upsampling_kernel_size": 4, "num_hash_functions": 8,
                     "num_hash_buckets": 16384, "local_transformer_stride": 128, "hidden_size": 768,
                     "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                     "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                     "type_vocab_size": 16, "max_positions": 16384, "initializer_range": 0.02}
#: what a Hugging Face config of CANINE states in CanineModelConfig's place (a converted model's,
#: read back when validating)
_HF_NAMES = {"max_position_embeddings": "max_positions"}
_OWN_FIELDS = ("downsampling_rate", "upsampling_kernel_size", "num_hash_functions", "num_hash_buckets",
               "local_transformer_stride")


#: a Hugging Face hidden_act -> bert_modeling.get_activation's name for the same function (its
#: "gelu" is the tanh form)
ORIGINAL_ACTIVATION = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu", "tanh": "tanh",
                       "linear": "linear"}
#: tf_slim's layer_norm, as bert_modeling.layer_norm calls it: the only epsilon the original has
LAYER_NORM_EPS = 1e-12


class CanineFormat(OriginalFormat):
    """The way back: the release's format, a checkpoint of modeling.CanineModel's variables (a
    TyDi QA fine-tune's heads under tydi_modeling.py's names) and the canine_config.json its
    CanineModelConfig reads, every key stated."""

    checkpoint_name = "canine_model.ckpt"
    config_file = "canine_config.json"
    vocabulary = False

    def config(self, hf, config_path, *, allow_exact_gelu, notes):
        eps = hf.get("layer_norm_eps", LAYER_NORM_EPS)
        if eps != LAYER_NORM_EPS:
            raise ConfigError(f"layer_norm_eps is {eps}; CANINE's LayerNorm uses 1e-12 always and "
                              "canine_config.json has no key for another", path=config_path)
        act = self.tanh_gelu_activation(hf, ORIGINAL_ACTIVATION, config_path, allow_exact_gelu=allow_exact_gelu,
                                        notes=notes, where="CANINE's bert_modeling.get_activation (gelu, the tanh "
                                                           "form, relu, tanh, linear)")
        named = {"max_positions": "max_position_embeddings"}
        config = {k: hf.get(named.get(k, k), default) for k, default in ORIGINAL_DEFAULTS.items()}
        config["hidden_act"] = act
        return {k: config[k] for k in sorted(config)}

    def table(self, family, names, original):
        return bind_to_config(family.layouts[0], original)


class CanineMemory(MemoryStructure):
    """CANINE's structure as model.py runs it: the local-attention layer over the characters, the
    downsampling convolution, the deep stack over ``seq / downsampling_rate`` molecules, the
    upsampling convolution and the last layer over the characters; the masks are one row per
    sequence, the attention's scores materialised, and every named output (the character
    encoding, each molecule layer's) kept until the model returns."""

    attention = "eager"

    def structure(self, config):
        """CANINE's parameters as they are (hash tables, the three character-level pieces and the
        deep stack) and its layers: the deep stack's between the two character layers."""
        h, i = int(config["hidden_size"]), int(config["intermediate_size"])
        layer = 4 * h * h + 4 * h + 2 * h + 2 * h * i + i + h + 2 * h
        rate, width = int(config["downsampling_rate"]), int(config["upsampling_kernel_size"])
        total = int(config["num_hash_buckets"]) * h  # every hash table holds hidden / num_hash_functions columns
        total += (int(config.get("max_position_embeddings", 16384)) + int(config.get("type_vocab_size", 16))) * h
        total += 2 * h  # the embeddings' LayerNorm
        total += (int(config["num_hidden_layers"]) + 2) * layer
        total += rate * h * h + h + 2 * h + width * 2 * h * h + h + 2 * h + h * h + h
        if (config.get("architectures") or ["CanineModel"])[0] == "CanineForTyDiQA":
            total += 2 * h + 2 + ANSWER_TYPES * h + ANSWER_TYPES
        layers = int(config["num_hidden_layers"]) + 2
        settings = {k: int(config[k]) for k in ("downsampling_rate", "upsampling_kernel_size",
                                                  "local_transformer_stride")}
        # no word table: the hash tables' rows (every codepoint is an input id, none a row)
        return {"family_parameters": total, "layers": layers, "distinct_layers": layers,
                "vocab": int(config["num_hash_buckets"]), "family_settings": settings}

    def replay_attention(self, replay, q, k, v, mask):
        """model.py's CanineSelfAttention: the scores, scaled, their masked sum and the
        ``torch.where`` that keeps it for padded keys, the probabilities: three score-sized
        tensors alive at the last matmul."""
        t, h, p = replay.tokens, replay.shape.hidden, replay.scores
        qc, kc = replay.new(t * h, q.dtype, QKV), replay.new(t * h, k.dtype, QKV)  # matmul's copies
        scores = replay.new(p, "float32", SCORES)
        replay.save(qc, kc)
        replay.tl.drop(qc, kc)
        scaled = replay.elementwise(scores)
        replay.tl.drop(scores)
        masked = replay.add(scaled, mask, SCORES)
        chosen = replay.elementwise(masked)
        replay.tl.drop(scaled)
        probs = replay.softmax(chosen)
        vc = replay.new(t * h, v.dtype, QKV)
        replay.save(vc)
        context = replay.new(t * h, probs.dtype, ATTENTION_OUT)
        replay.tl.drop(vc)
        out = replay.new(t * h, context.dtype, ATTENTION_OUT)  # transpose(1, 2).reshape
        replay.tl.drop(context, masked, chosen, probs)
        return out, None

    def replay_mask(self, replay, source):
        # model.py's mask adder: [batch, 1, 1, seq] in float32
        return replay.new(replay.s.batch * replay.s.seq_len, "float32", MASK)

    def replay_layer(self, replay, x, index, mask):
        settings, shape = replay.shape.family_settings, replay.shape
        rate, length, h = settings["downsampling_rate"], replay.s.seq_len, shape.hidden
        molecules = max(length // rate, 1)
        if index == 0:
            # local attention: each window of local_transformer_stride characters attends within itself
            with replay.at_length(length, keys=min(settings["local_transformer_stride"], length)):
                encoded = replay.bert_layer(x, index, mask)
            replay.held["characters"] = replay.alias(encoded)
            with replay.at_length(molecules):
                # the conv of width and stride rate: a matmul over each molecule's characters
                conv = replay.linear(encoded, rate * h, h, "chars_to_molecules", HIDDEN, replay.tokens)
                activated = replay.activation(conv, shape.hidden_act)
                replay.tl.drop(conv)
                joined = replay.elementwise(activated)  # the first character put first
                replay.tl.drop(activated)
                out = replay.layer_norm(joined, replay.tokens, HIDDEN)
                replay.tl.drop(joined)
                replay.held["molecule mask"] = replay.new(replay.s.batch * molecules, "float32", MASK)
            replay.tl.drop(encoded)
            replay.held["initial molecules"] = replay.alias(out)
            return out
        if index < shape.layers - 1:
            with replay.at_length(molecules):
                out = replay.bert_layer(x, index, replay.held["molecule mask"])
            replay.held[f"layer {index}"] = replay.alias(out)
            return out
        # upsampling: the molecules repeated to every character, beside the characters' encoding
        t, width = replay.tokens, settings["upsampling_kernel_size"]
        repeated = replay.new(t * h, x.dtype, HIDDEN)
        joined = replay.new(2 * t * h, x.dtype, HIDDEN)
        replay.tl.drop(repeated)
        padded = replay.new(replay.s.batch * (length + width - 1) * 2 * h, x.dtype, HIDDEN)
        replay.tl.drop(joined)
        conv = replay.linear(padded, 2 * h * width, h, "projection", HIDDEN, t)
        replay.tl.drop(padded)
        activated = replay.activation(conv, shape.hidden_act)
        replay.tl.drop(conv)
        upsampled = replay.layer_norm(activated, t, HIDDEN)
        replay.tl.drop(activated)
        out = replay.bert_layer(upsampled, index, mask)
        replay.tl.drop(upsampled)
        return out


class CanineFamily(Family):
    name = "canine"
    model_type = "canine"
    architectures = {frozenset(): "CanineModel", frozenset({"squad"}): "CanineForTyDiQA"}
    tied = {}
    pooler_weight = "canine.pooler.dense.weight"
    index_buffers = re.compile(r"^(\w+\.)?char_embeddings\.(position_ids|token_type_ids)$")
    config_file = "canine_config.json"
    config_files = ("canine_config.json", "model_config.json")
    head_descriptions = {"squad": "TyDi QA span and answer type",
                         "pretraining": "pretraining heads (CANINE-C's character decoder, CANINE-S's subword "
                                        "prediction: no released code computes them, never exported)"}
    task_heads = frozenset({"squad"})
    head_tensors = HEAD_TENSORS
    config_keys = frozenset(ORIGINAL_DEFAULTS)
    hf_config_fields = {"pad_token_id": 0, "bos_token_id": 0xE000, "eos_token_id": 0xE001,
                        "tie_word_embeddings": False}
    sentencepiece = CodepointTokenizer()
    memory = CanineMemory()
    original_format = CanineFormat()
    remote_code = RemoteCode(
        name="canine", prefix="Canine", model_type="canine", model_module="bertconv.families.canine.model",
        classes={"CanineModel": "Encoder", "CanineForTyDiQA": "TyDiQA"},
        heads={"CanineModel": "", "CanineForTyDiQA": "squad"},
        auto={"AutoModel": "CanineModel", "AutoModelForQuestionAnswering": "CanineForTyDiQA"},
        config_fields={"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                       "intermediate_size": 3072, "hidden_act": "gelu_new", "type_vocab_size": 16,
                       "max_position_embeddings": 16384, "layer_norm_eps": 1e-12, "initializer_range": 0.02,
                       "downsampling_rate": 4, "upsampling_kernel_size": 4, "num_hash_functions": 8,
                       "num_hash_buckets": 16384, "local_transformer_stride": 128, "with_pooler": True},
        head_outputs={"squad": {"last_hidden_state": "sequence_output", "pooler_output": "pooled_output",
                                "answer_type_logits": "answer_type_logits"}},
        pooler_weight="canine.pooler.dense.weight",
    )

    def translate_config(self, original: dict) -> dict:
        """CanineModelConfig's keys (a key the file leaves out is its default, as the original
        reads it) -> BertConfig's: ``max_positions`` is the position table's size; every codepoint
        is an input id."""
        data = {_HF_NAMES.get(k, k): v for k, v in original.items()}
        data = {**ORIGINAL_DEFAULTS, **data}
        hashes, hidden = data["num_hash_functions"], data["hidden_size"]
        if not isinstance(hashes, int) or not 0 < hashes <= MAX_HASH_FUNCTIONS or hidden % hashes:
            raise ConfigError(f"num_hash_functions is {hashes!r}; CANINE's hash embeddings take 1 to "
                              f"{MAX_HASH_FUNCTIONS} functions that divide hidden_size {hidden}")
        for key in _OWN_FIELDS:
            if not isinstance(data[key], int) or data[key] < 1:
                raise ConfigError(f"{key} is {data[key]!r}, not a positive integer")
        data["max_position_embeddings"] = data.pop("max_positions")
        data["vocab_size"] = LARGEST_CODEPOINT + 1
        return data

    def validation_inputs(self, inputs, config):
        from .tokenizer import codepoint_inputs
        return codepoint_inputs(inputs)

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import ARCHITECTURES

        return self.own_model(ARCHITECTURES, architecture, config, with_pooler=with_pooler, num_labels=num_labels)

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import canine_reference_forward
        return canine_reference_forward(weights, config, inputs, heads=heads)


FAMILY = CanineFamily(LAYOUTS)
