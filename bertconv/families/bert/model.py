"""bertconv's own PyTorch BERT, so that a converted model can be run and checked without
``transformers``.

The module tree *is* the Hugging Face state-dict naming (``bert.encoder.layer.0.attention.self.query
.weight``, ``LayerNorm`` kept in TensorFlow casing), so a converted file loads here and in
``transformers`` alike. It is an inference-only model: no dropout, no training heads' losses.

Numerics follow google-research/bert's modeling.py where the two could differ:

- ``hidden_act`` has Hugging Face's meaning, since it is read from a Hugging Face ``config.json``:
  ``"gelu"`` is the exact erf GELU, ``"gelu_new"``/``"gelu_pytorch_tanh"`` the tanh approximation
  that the original computes;
- the attention mask is added as ``(1 - mask) * -10000.0``, the original's constant (Hugging Face
  now uses the dtype's minimum, which differs only for a row whose keys are all padding);
- scores are scaled by ``1/sqrt(head_size)``; LayerNorm epsilon comes from the config.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import outputs as out
from .config import BertConfig
from .converted import ARCHITECTURE_HEADS, ARCHITECTURES, _describe, resolve_files
from .errors import ConfigError, InputError, MappingError

#: modeling.py's additive attention-mask value for padded keys.
ATTENTION_MASK_VALUE = -10000.0

#: heads that read the pooled output, so their model cannot go without a pooler
_HEADS_NEEDING_POOLER = frozenset({"nsp", "classifier"})
#: Hugging Face builds these without a pooler (``add_pooling_layer=False``)
_NO_POOLER_BY_DEFAULT = frozenset({"BertForMaskedLM", "BertForQuestionAnswering"})


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {
    "gelu": F.gelu,                  # Hugging Face's "gelu" is the exact erf form
    "gelu_python": F.gelu,
    "gelu_new": _gelu_tanh,          # the tanh approximation google-research/bert computes
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "relu": F.relu,
    "tanh": torch.tanh,
    "silu": F.silu,
    "swish": F.silu,
    "linear": lambda x: x,
}


def activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(f"hidden_act {name!r} is not supported",
                          hint=f"known: {', '.join(ACTIVATIONS)}") from None


@contextlib.contextmanager
def _skip_parameter_init():
    """Build modules without initialising their parameters (they are about to be replaced).

    Not ``with torch.device("meta")``: its first use imports about 1.4 s of torch internals,
    a third of a whole validation of BERT-Base."""
    classes = (nn.Linear, nn.Embedding, nn.LayerNorm)
    saved = [cls.reset_parameters for cls in classes]
    try:
        for cls in classes:
            cls.reset_parameters = lambda self: None
        yield
    finally:
        for cls, original in zip(classes, saved):
            cls.reset_parameters = original


# ------------------------------------------------------------------------------------- modules


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, token_type_ids):
        seq_len = input_ids.shape[1]
        x = self.word_embeddings(input_ids)  # [B, T, H]
        x = x + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings.weight[:seq_len].unsqueeze(0)
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x, mask_adder):
        batch, seq_len, hidden = x.shape

        def heads_first(t):
            return t.view(batch, seq_len, self.num_heads, self.head_size).transpose(1, 2)  # [B, A, T, d]

        query, key, value = heads_first(self.query(x)), heads_first(self.key(x)), heads_first(self.value(x))
        scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_size))  # [B, A, T, T]
        # The mask is added and the softmax taken in at least float32. In float16 the sum
        # ``score - 10000`` keeps only multiples of 8, so a row whose keys are all padding would get
        # a flat distribution instead of the original's softmax over its scores; and an all-masked
        # row is the one case where the constant itself matters, so it must stay -10000 exactly
        # (bfloat16 cannot even hold it: it rounds to -9984).
        compute = torch.promote_types(scores.dtype, torch.float32)
        probs = torch.softmax(scores.to(compute) + mask_adder, dim=-1).to(value.dtype)
        context = torch.matmul(probs, value)  # [B, A, T, d]
        return context.transpose(1, 2).reshape(batch, seq_len, hidden)


class BertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, context, residual):
        return self.LayerNorm(self.dense(context) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x, mask_adder):
        return self.output(self.self(x, mask_adder), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, intermediate, residual):
        return self.LayerNorm(self.dense(intermediate) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x, mask_adder):
        attention = self.attention(x, mask_adder)
        return self.output(self.intermediate(attention), attention)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, sequence):
        return torch.tanh(self.dense(sequence[:, 0]))


def additive_mask(attention_mask: torch.Tensor, like: torch.Tensor, value: float) -> torch.Tensor:
    """[B, 1, 1, T], one adder for every head and query position: ``(1 - mask) * value`` in at
    least float32 (see BertSelfAttention)."""
    dtype = torch.promote_types(like.dtype, torch.float32)
    return ((1.0 - attention_mask.to(dtype)) * value)[:, None, None, :]


def embed(model: nn.Module, input_ids, token_type_ids, attention_mask):
    """What every encoder (BERT, ALBERT, ELECTRA) does first: default token types and mask, the
    embeddings (recorded as an output), the mask adder. Returns ``(x, results, mask_adder)``."""
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    x = model.embeddings(input_ids, token_type_ids)
    return x, {out.EMBEDDINGS: x}, additive_mask(attention_mask, x, model.attention_mask_value)


class BertEncoderModel(nn.Module):
    """Hugging Face's ``BertModel``: embeddings, encoder, optional pooler."""

    def __init__(self, config: BertConfig, *, with_pooler: bool = True,
                 attention_mask_value: float = ATTENTION_MASK_VALUE):
        super().__init__()
        self.config = config
        #: the additive mask value; a parameter only so that tests can model a wrong conversion
        self.attention_mask_value = attention_mask_value
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if with_pooler else None

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        x, results, mask_adder = embed(self, input_ids, token_type_ids, attention_mask)
        for i, layer in enumerate(self.encoder.layer):
            x = layer(x, mask_adder)
            results[out.layer(i)] = x
        results[out.SEQUENCE] = x
        if self.pooler is not None:
            results[out.POOLED] = self.pooler(x)
        return results


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """The MLM decoder is the word-embedding matrix itself: it is passed in at call time rather
    than held, so the state dict stores it once (as ``bert.embeddings.word_embeddings.weight``)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, sequence, decoder_weight):
        return F.linear(self.transform(sequence), decoder_weight, self.bias)  # [B, T, vocab]


class BertPreTrainingHeads(nn.Module):
    """``cls``: the MLM head (``predictions``) and/or the NSP head (``seq_relationship``)."""

    def __init__(self, config: BertConfig, *, mlm: bool, nsp: bool):
        super().__init__()
        self.predictions = BertLMPredictionHead(config) if mlm else None
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if nsp else None


class BertWithHeads(nn.Module):
    """Every ``BertFor*`` architecture: ``bert`` plus the heads its name implies."""

    def __init__(self, config: BertConfig, architecture: str, *, num_labels: int = 2,
                 with_pooler: bool | None = None, attention_mask_value: float = ATTENTION_MASK_VALUE):
        super().__init__()
        if architecture not in ARCHITECTURE_HEADS or architecture == "BertModel":
            raise InputError(f"unknown architecture {architecture!r}",
                             hint=f"choose one of {', '.join(ARCHITECTURES[1:])}")
        self.architecture = architecture
        self.heads = ARCHITECTURE_HEADS[architecture]
        if with_pooler is None:
            with_pooler = architecture not in _NO_POOLER_BY_DEFAULT
        if not with_pooler and self.heads & _HEADS_NEEDING_POOLER:
            raise InputError(f"{architecture} needs the pooler")
        self.bert = BertEncoderModel(config, with_pooler=with_pooler, attention_mask_value=attention_mask_value)
        if self.heads & {"mlm", "nsp"}:
            self.cls = BertPreTrainingHeads(config, mlm="mlm" in self.heads, nsp="nsp" in self.heads)
        if "classifier" in self.heads:
            self.num_labels = num_labels
            self.classifier = nn.Linear(config.hidden_size, num_labels)
        if "squad" in self.heads:
            self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, torch.Tensor]:
        results = self.bert(input_ids, token_type_ids, attention_mask)
        sequence = results[out.SEQUENCE]
        if "mlm" in self.heads:
            results[out.MLM_LOGITS] = self.cls.predictions(sequence, self.bert.embeddings.word_embeddings.weight)
        if "nsp" in self.heads:
            results[out.NSP_LOGITS] = self.cls.seq_relationship(results[out.POOLED])
        if "classifier" in self.heads:
            results[out.CLASSIFIER_LOGITS] = self.classifier(results[out.POOLED])
        if "squad" in self.heads:
            results[out.SPAN_LOGITS] = self.qa_outputs(sequence)  # [B, T, 2]: start, end
        return results


def build_model(config: BertConfig, architecture: str = "BertModel", *, num_labels: int = 2,
                with_pooler: bool | None = None,
                attention_mask_value: float = ATTENTION_MASK_VALUE) -> nn.Module:
    """A randomly initialised model of ``architecture`` (weights are meant to be loaded next)."""
    activation(config.hidden_act)  # fail on an unknown activation before allocating anything
    if architecture == "BertModel":
        model = BertEncoderModel(config, with_pooler=True if with_pooler is None else with_pooler,
                                 attention_mask_value=attention_mask_value)
        model.architecture = "BertModel"
        model.heads = frozenset()
    else:
        model = BertWithHeads(config, architecture, num_labels=num_labels, with_pooler=with_pooler,
                              attention_mask_value=attention_mask_value)
    return model.eval()


def _encoder_of(model: nn.Module) -> BertEncoderModel:
    # other families' models (model_albert, model_electra) keep config and mask value on the top module
    return model if isinstance(model, BertEncoderModel) else getattr(model, "bert", model)


# ------------------------------------------------------------------------------------- running


def _as_tensor(array, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.long, device=device)


def run_outputs(model: nn.Module, inputs) -> dict[str, np.ndarray]:
    """Run ``model`` on ``inputs`` (``input_ids``, ``token_type_ids``, ``attention_mask``, int
    arrays ``[B, T]``) and return every named output as a float64 NumPy array."""
    param = next(model.parameters())
    encoder = _encoder_of(model)
    input_ids = _as_tensor(inputs["input_ids"], param.device)
    if input_ids.ndim != 2:
        raise InputError(f"input_ids must be [batch, seq_len], got shape {list(input_ids.shape)}")
    token_type_ids = _as_tensor(inputs.get("token_type_ids", np.zeros(input_ids.shape, np.int64)), param.device)
    attention_mask = _as_tensor(inputs.get("attention_mask", np.ones(input_ids.shape, np.int64)), param.device)
    config = encoder.config
    for name, t, upper in (("input_ids", input_ids, config.vocab_size),
                           ("token_type_ids", token_type_ids, config.type_vocab_size)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= upper):
            raise InputError(f"{name} holds values outside [0, {upper})")
    if input_ids.shape[1] > config.max_position_embeddings:
        raise InputError(f"seq_len {input_ids.shape[1]} exceeds max_position_embeddings "
                         f"{config.max_position_embeddings}")
    with torch.inference_mode():
        results = model(input_ids, token_type_ids, attention_mask)
    return {name: value.detach().to("cpu", torch.float64).numpy() for name, value in results.items()}


# ------------------------------------------------------------------------------------- loading

#: Entries that older Hugging Face checkpoints store although they hold nothing of their own:
#: each is accepted only when it equals what it duplicates.
_REDUNDANT = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}
_POSITION_IDS = ("bert.embeddings.position_ids", "embeddings.position_ids",
                 "bert.embeddings.token_type_ids", "embeddings.token_type_ids")


def _num_labels(config_dict: dict[str, Any], tensors: dict[str, torch.Tensor]) -> int:
    if "classifier.weight" in tensors:
        return int(tensors["classifier.weight"].shape[0])
    if isinstance(config_dict.get("id2label"), dict):
        return len(config_dict["id2label"])
    return int(config_dict.get("num_labels", 2))


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict and safetensors metadata of one weights file."""
    if path.suffix in (".bin", ".pt", ".pth"):
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - pickle and zip failures come in many types
            raise InputError(f"cannot read as a PyTorch state dict: {e}", path=path) from None
        if not isinstance(tensors, dict):
            raise InputError("not a state dict (expected a mapping of names to tensors)", path=path)
        return dict(tensors), {}
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as e:
        raise InputError(f"cannot read as safetensors: {e}", path=path) from None
    return tensors, metadata


def read_converted(path: str | Path, *, config: BertConfig | dict | str | Path | None = None
                   ) -> tuple[dict[str, torch.Tensor], BertConfig, dict[str, Any], str]:
    """Weights, config, the config as a dict and the architecture of a converted output."""
    weights_path, config_path = resolve_files(Path(path))
    tensors, metadata = _read_weights(weights_path)
    return (tensors, *_describe(weights_path, config_path, list(tensors), metadata, config))


def load_state_dict_strict(model: nn.Module, tensors: dict[str, torch.Tensor], *,
                           path: str | Path | None = None) -> None:
    """Fill every parameter of ``model`` from ``tensors``: a missing name, an unexpected name or a
    shape that does not fit is an error, all of them named at once. Nothing stays randomly
    initialised."""
    expected = model.state_dict()
    tensors = dict(tensors)
    problems = []
    prefix = "" if isinstance(model, BertEncoderModel) else "bert."
    for redundant, original in _REDUNDANT.items():
        if redundant in tensors and original in tensors:
            if not torch.equal(tensors[redundant], tensors[original]):
                problems.append(f"{redundant} differs from {original}, which it must equal (tied)")
            del tensors[redundant]
    for name in _POSITION_IDS:
        if name in tensors:  # buffers older releases saved; never weights
            del tensors[name]
    if isinstance(model, BertEncoderModel):
        # a BertModel saved by others may carry the "bert." prefix; accept it when every name has it
        if tensors and all(n.startswith("bert.") for n in tensors) and not any(n.startswith("bert.") for n in expected):
            tensors = {n[len("bert."):]: t for n, t in tensors.items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:8])}"
                        + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected[:8])}"
                        + (" ..." if len(unexpected) > 8 else ""))
    for name in sorted(set(expected) & set(tensors)):
        if tuple(tensors[name].shape) != tuple(expected[name].shape):
            problems.append(f"{name} has shape {list(tensors[name].shape)}, the model expects "
                            f"{list(expected[name].shape)}")
        elif not tensors[name].is_floating_point():
            problems.append(f"{name} has dtype {tensors[name].dtype}, not a floating-point weight")
    if problems:
        raise MappingError("; ".join(problems), path=path,
                           hint=f"the weights do not fit a {getattr(model, 'architecture', 'BERT')} "
                                f"(prefix {prefix!r}) with this config")
    # assign: the file's tensors become the parameters, so the weights are never held twice
    model.load_state_dict(tensors, strict=True, assign=True)


def load_model(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               config: BertConfig | dict | str | Path | None = None, head: str | None = None,
               attention_mask_value: float = ATTENTION_MASK_VALUE) -> nn.Module:
    """Load a converted output strictly: every parameter comes from the file, none is left random.

    ``path``: a Hugging Face directory (``config.json`` + ``model.safetensors``) or a bare
    ``.safetensors`` file (config from ``config``, else from the file's ``bertconv.config``
    metadata). The architecture comes from the config's ``architectures``, the file's metadata, or
    the tensor names; ``head`` (an architecture name) overrides it.
    """
    tensors, parsed, config_dict, architecture = read_converted(path, config=config)
    if config_dict.get("model_type") in _OTHER_FAMILIES:
        import importlib
        module = importlib.import_module(f".model_{config_dict['model_type']}", __package__)
        model = module.load(tensors, parsed, head or architecture, path=path,
                            attention_mask_value=attention_mask_value)
        return _finish(model, tensors, config_dict, device, dtype)
    if head is not None:
        if head not in ARCHITECTURE_HEADS:
            raise InputError(f"unknown architecture {head!r}", hint=f"choose one of {', '.join(ARCHITECTURES)}")
        architecture = head
    heads = ARCHITECTURE_HEADS[architecture]
    pooler_name = "pooler.dense.weight" if architecture == "BertModel" else "bert.pooler.dense.weight"
    has_pooler = pooler_name in tensors or ("bert." + pooler_name) in tensors
    with_pooler = True if heads & _HEADS_NEEDING_POOLER else has_pooler
    # No time goes into random values that are replaced anyway; the unfilled storage is never
    # touched, so it costs no memory either.
    with _skip_parameter_init():
        model = build_model(parsed, architecture, num_labels=_num_labels(config_dict, tensors),
                            with_pooler=with_pooler, attention_mask_value=attention_mask_value)
    load_state_dict_strict(model, tensors, path=path)
    return _finish(model, tensors, config_dict, device, dtype)


#: config.json model types whose models live in their own modules (bertconv.model_<type>)
_OTHER_FAMILIES = ("albert", "electra")


def _finish(model: nn.Module, tensors, config_dict, device, dtype) -> nn.Module:
    stored = [t.dtype for t in tensors.values() if t.is_floating_point()]
    #: the least precise dtype the weights were stored in (validation judges by it)
    model.stored_dtype = max(stored, key=lambda d: torch.finfo(d).eps) if stored else torch.float32
    model.source_config = config_dict
    return model.to(device=device, dtype=dtype).eval()
