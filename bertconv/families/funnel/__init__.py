"""The Funnel-Transformer family (laiguokun/Funnel-Transformer's TensorFlow code): checkpoints of
its ELECTRA pretraining (discriminator and generator towers, one layout each; ``--tower`` picks)
and of its classifier fine-tunes, config from ``net_config.json``'s own keys.

transformers 5's ``Funnel*`` classes compute something else for the same weights (mask pooling of
windows that mix tokens and padding, the masked-LM head, no input projection or repeated layers),
so a converted directory carries the family's own modeling code (``model.py``, written by
:mod:`bertconv.families.remote_code`) and loads with ``trust_remote_code=True``. The float64
reference is ``reference.py``; the tokenizer is WordPiece from the release's ``vocab.uncased.txt``
(:attr:`FunnelFamily.wordpiece`).
"""
from __future__ import annotations

from ...vocab import WordPieceConvention
from ..base import Family, MemoryStructure, OriginalFormat, Towers
from ..remote_code import RemoteCode
from .layouts import DEFAULT_TASK, DISCRIMINATOR, GENERATOR, LAYOUTS, PREFIX

ARCHITECTURES = {
    frozenset(): "FunnelOriginalBaseModel",
    frozenset({"discriminator"}): "FunnelOriginalForPreTraining",
    frozenset({"mlm"}): "FunnelOriginalForMaskedLM",
    frozenset({"classifier"}): "FunnelOriginalForSequenceClassification",
}
#: net_config.json's keys (modeling.py's ModelConfig.keys)
NET_CONFIG_KEYS = frozenset({"block_size", "vocab_size", "d_embed", "d_model", "n_head", "d_head", "d_inner",
                             "ff_activation", "dropout", "dropatt", "dropact", "init", "init_std", "init_range",
                             "rel_attn_type", "separate_cls", "pooling_type", "pooling_size", "pool_q_only",
                             "decoder_size"})
#: what the translated config keeps of the original's own settings, read by model.py
FUNNEL_FIELDS = ("block_size", "decoder_size", "d_head", "separate_cls", "truncate_seq", "pool_q_only",
                 "pooling_type", "pooling_size", "rel_attn_type")
#: net_config.json's training settings, kept as they are for the way back (ModelConfig needs every key)
TRAINING_KEYS = {"dropact": 0.0, "init": "truncated_normal", "init_range": 0.1}
#: a Hugging Face hidden_act -> ops.py's ff_activation that computes it (its gelu is the tanh form)
ORIGINAL_ACTIVATION = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu", "tanh": "tanh"}


def _depths(spec, key):
    from ...errors import ConfigError
    blocks = []
    for part in str(spec).split("_"):
        pieces = part.split("x")
        if len(pieces) > 2 or not all(p.isdigit() and int(p) > 0 for p in pieces):
            raise ConfigError(f"{key} {spec!r} is not the original's form (sizes joined by '_', each "
                              "'<layers>' or '<layers>x<repeats>')")
        blocks.append((int(pieces[0]), int(pieces[1]) if len(pieces) > 1 else 1))
    return blocks


#: the estimate's components (bertconv.memory.estimate's names; families do not import it)
QKV, SCORES = "activations: attention q/k/v", "activations: attention scores and probabilities"
ATTENTION_OUT, HIDDEN = "activations: attention output", "activations: hidden states"
FEED_FORWARD, MASK = "activations: feed-forward", "activations: attention mask"
EMBEDDINGS = "activations: embeddings"


def layer_runs(settings: dict, length: int) -> list[tuple[int, int, bool, bool]]:
    """Each layer run of model.py's forward over ``length`` positions, in order: (query length,
    key length, whether the block pools the sequence first, whether it is the decoder's)."""
    size, truncate = settings["pooling_size"], settings["truncate_seq"]
    runs, current = [], length
    for block, (layers, repeat) in enumerate(settings["blocks"]):
        for run in range(layers * repeat):
            if block > 0 and run == 0:
                body = max(current - (2 if truncate else 1), 0)
                pooled = 1 + -(-body // size)
                runs.append((pooled, current if settings["pool_q_only"] else pooled, True, False))
                current = pooled
            else:
                runs.append((current, current, False, False))
    if len(settings["blocks"]) > 1:
        runs += [(length, length, False, True)] * settings["decoder_runs"]
    return runs


class FunnelMemory(MemoryStructure):
    """Funnel's structure as model.py runs it: its parameters (heads of ``d_head`` that need not
    make up d_model, repeated layers, the decoder of the pretraining towers), every block after
    the first at the length its pooling leaves (its first layer's queries pooled, its keys not,
    with ``pool_q_only``), the decoder at full length after the bridge, and the relative
    attention's score-sized tensors (content, position and segment terms, the scores and the
    probabilities) alive together; every layer's output is kept until the model returns."""

    attention = "eager"

    def structure(self, config):
        hidden, inter = int(config["hidden_size"]), int(config["intermediate_size"])
        width = int(config.get("embedding_size") or hidden)
        vocab = int(config["vocab_size"])
        inner = int(config["num_attention_heads"]) * int(config.get("d_head") or 64)
        layer = 5 * hidden * inner + 7 * inner + 2 * hidden * inter + inter + 6 * hidden
        blocks = _depths(config.get("block_size", "3_3_3"), "block_size")
        architecture = (config.get("architectures") or [""])[0]
        with_decoder = architecture in ("FunnelOriginalForPreTraining", "FunnelOriginalForMaskedLM")
        size, repeat = _depths(config.get("decoder_size", "0"), "decoder_size")[0] if with_decoder else (0, 0)
        labels = len(config.get("id2label") or {}) or int(config.get("num_labels", 2))
        heads = {"FunnelOriginalForPreTraining": hidden * hidden + 2 * hidden + 1,
                 "FunnelOriginalForMaskedLM": hidden * width + 3 * width + vocab,
                 "FunnelOriginalForSequenceClassification": hidden * hidden + hidden + (hidden + 1) * labels}
        distinct = sum(s for s, _ in blocks) + size
        params = (vocab * width + 2 * width + (width * hidden + hidden if width != hidden else 0)
                  + distinct * layer + heads.get(architecture, 0))
        decoder_runs = size * repeat if len(blocks) > 1 else 0  # one block: no pooling to undo
        settings = {"blocks": blocks, "decoder_runs": decoder_runs, "d_head": int(config.get("d_head") or 64),
                    "pooling_size": int(config.get("pooling_size", 2)), "truncate_seq": config.get("truncate_seq", True),
                    "pool_q_only": config.get("pool_q_only", True)}
        return {"layers": sum(s * r for s, r in blocks) + decoder_runs, "distinct_layers": distinct,
                "embedding_size": width, "embedding_projection": width != hidden, "position_table": False,
                "mlm_width": width, "family_parameters": params, "family_settings": settings}

    def replay_embeddings(self, replay):
        # the word rows and their LayerNorm: no positions, no segments
        word = replay.new(replay.tokens * replay.shape.embedding_size, "float32", EMBEDDINGS)
        out = replay.layer_norm(word, replay.tokens, EMBEDDINGS)
        replay.tl.drop(word)
        return out

    def replay_mask(self, replay, source):
        # Side's padding: one row per sequence
        return replay.new(replay.s.batch * replay.s.seq_len, "float32", MASK)

    def replay_layer(self, replay, x, index, mask):
        settings, sh = replay.shape.family_settings, replay.shape
        full = replay.s.seq_len
        queries, keys, pools, decoder = layer_runs(settings, full)[index]
        batch, h = replay.s.batch, sh.hidden
        bridge = None
        if decoder and index == sum(size * repeat for size, repeat in settings["blocks"]):
            # the last block's output repeated back to full length, padded, the first block's added
            first = settings["blocks"][0][0] * settings["blocks"][0][1] - 1
            repeated = replay.new(batch * full * h, x.dtype, HIDDEN)
            padded = replay.new(batch * full * h, x.dtype, HIDDEN)
            replay.tl.drop(repeated)
            joined = replay.new(batch * full * h, x.dtype, HIDDEN)
            replay.tl.drop(padded)
            x = bridge = replay.add(joined, replay.held[f"run {first}"], HIDDEN)
            replay.tl.drop(joined)
        pooled = None
        if pools:
            with replay.at_length(queries):
                padded = replay.new(batch * (queries - 1) * settings["pooling_size"] * h, x.dtype, HIDDEN)
                summed = replay.new(replay.tokens * h, x.dtype, HIDDEN)
                replay.tl.drop(padded)
                divided = replay.elementwise(summed)
                replay.tl.drop(summed)
                pooled = replay.elementwise(divided)  # [CLS] put first
                replay.tl.drop(divided)
        with replay.at_length(queries, keys=keys):
            out = self._layer(replay, pooled if pooled is not None else x, x, index, keys)
        replay.tl.drop(pooled, bridge)
        replay.held[f"run {index}"] = replay.alias(out)
        return out

    def _layer(self, replay, query, key, index, keys):
        """model.py's Layer over ``query`` attending to ``key``: RelativeAttention, then FeedForward."""
        sh, settings = replay.shape, replay.shape.family_settings
        t, h, p, batch = replay.tokens, sh.hidden, replay.scores, replay.s.batch
        replay.layer_sizes[index] = (t, p)
        inner, weights = sh.heads * settings["d_head"], f"layer{index}"
        key_rows = batch * keys
        queries = t // batch
        # the structure: sinusoids of both sides, the segments' comparisons, the [CLS] mask
        structure = [replay.new(2 * (queries + keys) * (h // 2), "float32", HIDDEN),
                     replay.new(t * keys, "bool", MASK), replay.new(queries * keys, "float32", MASK)]
        projected = replay.linear(query, h, inner, weights + ".q", QKV, t)
        q = replay.elementwise(projected)  # times the scale
        replay.tl.drop(projected)
        k = replay.linear(key, h, inner, weights + ".k", QKV, key_rows)
        v = replay.linear(key, h, inner, weights + ".v", QKV, key_rows)

        def einsum(left: int, right: int, out: int):
            """An einsum as bmm: its operands copied to contiguous batches, the product new."""
            a, b = replay.new(left, "float32", QKV), replay.new(right, "float32", QKV)
            replay.save(a, b)
            product = replay.new(out, "float32", SCORES)
            replay.tl.drop(a, b)
            return product

        biased = replay.elementwise(q)
        content = einsum(t * inner, key_rows * inner, p)
        replay.tl.drop(biased)
        biased = replay.elementwise(q)
        qr = replay.new(t * sh.heads * h, "float32", QKV)  # (q + r_r_bias) r_kernel^T
        replay.tl.drop(biased)
        position = None
        for _ in range(4):  # sin and cos of each side against the two halves
            factor = replay.new(t * sh.heads * (h // 2), "float32", QKV)
            term = einsum(t * sh.heads * (h // 2), 0, p)
            replay.tl.drop(factor)
            if position is None:
                position = term
            else:
                summed = replay.add(position, term, SCORES)
                replay.tl.drop(position, term)
                position = summed
        biased = replay.elementwise(q)
        segment_scores = replay.new(t * sh.heads * 2, "float32", SCORES)
        replay.tl.drop(biased)
        segment = replay.new(p, "float32", SCORES)  # torch.where over the segment pairs
        both = replay.add(position, segment, SCORES)
        kept = replay.elementwise(both)  # times not_cls
        replay.tl.drop(both)
        scores = replay.add(content, kept, SCORES)
        replay.tl.drop(kept)
        masked = replay.add(scores, replay.new(key_rows, "float32", MASK), SCORES)
        replay.tl.drop(scores)
        probs = replay.softmax(masked)
        context = einsum(0, key_rows * inner, t * inner)  # the probabilities are contiguous already
        output = replay.linear(context, inner, h, weights + ".o", HIDDEN, t)
        residual = replay.add(query, output, HIDDEN)
        replay.tl.drop(output)
        attended = replay.layer_norm(residual, t, HIDDEN)
        replay.tl.drop(residual, q, k, v, content, qr, position, segment_scores, segment, masked, probs, context)
        replay.tl.drop(*structure)
        first = replay.linear(attended, h, sh.intermediate, weights + ".linear_1", FEED_FORWARD, t)
        activated = replay.activation(first, "gelu" if sh.hidden_act.startswith("gelu") else sh.hidden_act)
        replay.tl.drop(first)
        second = replay.linear(activated, sh.intermediate, h, weights + ".linear_2", HIDDEN, t)
        replay.tl.drop(activated)
        residual = replay.add(attended, second, HIDDEN)
        replay.tl.drop(second, attended)
        out = replay.layer_norm(residual, t, HIDDEN)
        replay.tl.drop(residual)
        return out


class FunnelTFFormat(OriginalFormat):
    """The way back: the original's checkpoint (the discriminator's ``model/`` names, a fine-tune's
    task head) and the net_config.json its ModelConfig.init_from_json reads."""

    checkpoint_name = "model.ckpt"
    config_file = "net_config.json"

    def table(self, family, names, original):
        # the decoder's TF layers are numbered after the encoder's: the table is this model's own.
        # A bare encoder's names carry no prefix
        prefixed = [n if n.startswith(PREFIX + ".") else f"{PREFIX}.{n}" for n in names]
        return family.layouts[0].for_checkpoint(prefixed)

    def config(self, hf, config_path, *, allow_exact_gelu, notes):
        from ...errors import ConfigError

        if (hf.get("architectures") or [None])[0] == "FunnelOriginalForMaskedLM":
            raise ConfigError("a generator has no checkpoint of its own in the original's format: pretrain.py "
                              "keeps it beside the discriminator, whose embeddings it reads", path=config_path,
                              hint="pt2tf writes a Funnel discriminator, bare encoder or fine-tune")
        if hf.get("layer_norm_eps", 1e-8) != 1e-8:
            raise ConfigError(f"layer_norm_eps is {hf['layer_norm_eps']}; the original's LayerNorm uses 1e-8 always",
                              path=config_path)
        act = self.tanh_gelu_activation(hf, ORIGINAL_ACTIVATION, config_path, allow_exact_gelu=allow_exact_gelu,
                                        notes=notes, where="the original's ff_activation (gelu, the tanh form, "
                                                           "relu, tanh)")
        if (hf.get("architectures") or [None])[0] == "FunnelOriginalForSequenceClassification":
            notes.append(f"the task head is written under model/{DEFAULT_TASK}/ (a converted model does not keep the "
                         f"task's name): run classifier.py with --cls_scope={DEFAULT_TASK}")
        if hf.get("truncate_seq", True) is not True:
            notes.append("truncate_seq false is modeling.py's --truncate_seq flag, which net_config.json does not "
                         "record: run the original with --truncate_seq=False")
        hidden = int(hf["hidden_size"])
        net = {"block_size": hf.get("block_size", "3_3_3"), "vocab_size": int(hf["vocab_size"]),
               "d_embed": int(hf.get("embedding_size") or hidden), "d_model": hidden,
               "n_head": int(hf["num_attention_heads"]), "d_head": int(hf.get("d_head", 64)),
               "d_inner": int(hf["intermediate_size"]), "ff_activation": act,
               "dropout": hf.get("hidden_dropout_prob", 0.1), "dropatt": hf.get("attention_probs_dropout_prob", 0.1),
               "init_std": hf.get("initializer_range", 0.02),
               **{k: hf.get(k, default) for k, default in TRAINING_KEYS.items()},
               **{k: hf.get(k, self.DEFAULTS[k]) for k in ("rel_attn_type", "separate_cls", "pooling_type",
                                                            "pooling_size", "pool_q_only", "decoder_size")}}
        return {k: net[k] for k in sorted(net)}

    #: ModelConfig's own defaults
    DEFAULTS = {"rel_attn_type": "factorized", "separate_cls": True, "pooling_type": "mean", "pooling_size": 2,
                "pool_q_only": True, "decoder_size": "0"}


class FunnelFamily(Family):
    name = "funnel"
    model_type = "funnel_original"
    architectures = ARCHITECTURES
    without_pooler = frozenset(ARCHITECTURES.values())
    tied = {}
    config_file = "net_config.json"
    config_files = ("net_config.json", "config.json")
    head_descriptions = {"discriminator": "ELECTRA discriminator", "mlm": "masked LM (the generator's)",
                         "classifier": "sequence classifier",
                         "generator_tower": "ELECTRA generator (--tower generator)",
                         "discriminator_tower": "ELECTRA discriminator (--tower discriminator)"}
    task_heads = frozenset({"classifier"})
    #: the tensors each head's reference needs (the classifier's task scope varies: its summary)
    head_tensors = {"discriminator": ("model/binary_proj/dense/kernel", "model/binary_loss/weight"),
                    "mlm": ("generator/lm_proj/dense/kernel", "generator/lm_loss/bias"),
                    "classifier": ("model/sequnece_summary/summary/kernel",)}
    #: net_config.json's keys, and pretrain.py's ``width_shrink`` (the generator's width: the
    #: generator layout uses its flag's default 0.25, with a note, where --set states none)
    config_keys = NET_CONFIG_KEYS | {"width_shrink"}
    unrecorded_config = {"truncate_seq": (True, "modeling.py's --truncate_seq flag default")}
    hf_config_fields = {"pad_token_id": 0, "tie_word_embeddings": True}
    #: the releases' vocab.uncased.txt with XLNet's special tokens; the original's data pipeline
    #: gives <cls> segment id 2 (data_utils.py's seg_id_cls), which its attention reads, and its
    #: WordpieceTokenizer splits words of up to 200 characters. transformers 5's FunnelTokenizer
    #: rebuilds its WordPiece model from vocab.txt with 100: the files name the generic class,
    #: which keeps tokenizer.json as written
    wordpiece = WordPieceConvention(
        file_names=("vocab.uncased.txt", "vocab.cased.txt", "vocab.txt"),
        special_tokens={"unk_token": "<unk>", "sep_token": "<sep>", "pad_token": "<pad>", "cls_token": "<cls>",
                        "mask_token": "<mask>"},
        cls_token_type_id=2, max_input_chars_per_word=200, tokenizer_class="PreTrainedTokenizerFast")
    two_towers = Towers(layouts={"discriminator": DISCRIMINATOR.name, "generator": GENERATOR.name},
                        by_architecture={"FunnelOriginalForPreTraining": "discriminator",
                                         "FunnelOriginalForMaskedLM": "generator"})
    memory = FunnelMemory()
    original_format = FunnelTFFormat()
    remote_code = RemoteCode(
        name="funnel_original", prefix="FunnelOriginal", model_type="funnel_original",
        model_module="bertconv.families.funnel.model",
        classes={"FunnelOriginalBaseModel": "Base", "FunnelOriginalForPreTraining": "PreTraining",
                 "FunnelOriginalForMaskedLM": "MaskedLM", "FunnelOriginalForSequenceClassification": "SequenceClassification"},
        heads={"FunnelOriginalBaseModel": "", "FunnelOriginalForPreTraining": "discriminator",
               "FunnelOriginalForMaskedLM": "mlm", "FunnelOriginalForSequenceClassification": "classifier"},
        auto={"AutoModel": "FunnelOriginalBaseModel", "AutoModelForPreTraining": "FunnelOriginalForPreTraining",
              "AutoModelForMaskedLM": "FunnelOriginalForMaskedLM",
              "AutoModelForSequenceClassification": "FunnelOriginalForSequenceClassification"},
        config_fields={"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 18, "num_attention_heads": 12,
                       "intermediate_size": 3072, "hidden_act": "gelu_new", "embedding_size": None,
                       "initializer_range": 0.02, "block_size": "6_6_6", "decoder_size": "2", "d_head": 64,
                       "separate_cls": True, "truncate_seq": True, "pool_q_only": True, "pooling_type": "mean",
                       "pooling_size": 2, "rel_attn_type": "factorized", "with_pooler": False},
    )

    def translate_config(self, original):
        from ...errors import ConfigError
        if "d_model" not in original:
            return original  # already in BertConfig's fields (a converted model's config.json)
        if original.get("rel_attn_type", "factorized") not in ("factorized", "rel_shift"):
            raise ConfigError(f"rel_attn_type {original['rel_attn_type']!r}: bertconv converts Funnel models with "
                              "relative attention (factorized or rel_shift), not absolute position embeddings")
        if original.get("separate_cls", True) is not True:
            raise ConfigError("separate_cls false: the original's two relative-attention forms (factorized, "
                              "rel_shift) place the pooled positions differently then; bertconv converts "
                              "separate_cls true models (every release)")
        if original.get("pooling_type", "mean") not in ("mean", "max"):
            raise ConfigError(f"pooling_type {original['pooling_type']!r} is none of the original's mean, max")
        if original.get("ff_activation", "gelu") not in ("gelu", "relu", "tanh"):
            raise ConfigError(f"ff_activation {original['ff_activation']!r} is none of the original's gelu, relu, tanh")
        blocks = _depths(original.get("block_size", "3_3_3"), "block_size")
        _depths(original.get("decoder_size", "0"), "decoder_size")
        d_model = int(original["d_model"])
        known = {"vocab_size": int(original["vocab_size"]), "hidden_size": d_model,
                 "embedding_size": int(original.get("d_embed", d_model)),
                 "num_attention_heads": int(original["n_head"]), "intermediate_size": int(original["d_inner"]),
                 "hidden_act": original.get("ff_activation", "gelu"),
                 "num_hidden_layers": sum(size * repeat for size, repeat in blocks),
                 # relative positions only: no table bounds the length; 512 is the releases' longest input
                 "max_position_embeddings": 512,
                 # segment ids 0 and 1, and 2 for [CLS] (data_utils.py's seg_id_cls)
                 "type_vocab_size": 3,
                 "hidden_dropout_prob": float(original.get("dropout", 0.1)),
                 "attention_probs_dropout_prob": float(original.get("dropatt", 0.1)),
                 "initializer_range": float(original.get("init_std", 0.02)),
                 "layer_norm_eps": 1e-8}
        defaults = {"block_size": "3_3_3", "decoder_size": "0", "d_head": 64, "separate_cls": True,
                    "truncate_seq": True, "pool_q_only": True, "pooling_type": "mean", "pooling_size": 2,
                    "rel_attn_type": "factorized"}
        funnel = {k: original.get(k, defaults[k]) for k in FUNNEL_FIELDS}
        kept = {k: original[k] for k in TRAINING_KEYS if k in original}
        rest = {k: v for k, v in original.items() if k not in NET_CONFIG_KEYS and k not in funnel and k not in known}
        return {**known, **funnel, **kept, **rest}

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import ARCHITECTURES

        return self.own_model(ARCHITECTURES, architecture, config, num_labels=num_labels)

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import funnel_reference_forward
        return funnel_reference_forward(weights, config, inputs, tower=tower or "discriminator", heads=heads)


FAMILY = FunnelFamily(LAYOUTS)
