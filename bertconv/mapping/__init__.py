"""Name mapping as data.

A family's mapping is a table of :class:`Rule` rows: a source (TensorFlow) name pattern, a target
(PyTorch) name pattern and a transform. ``{layer}`` in a pattern stands for a layer index. The
same table maps in both directions (TF -> PyTorch for ``tf2pt`` and ``diff``, PyTorch -> TF for
``pt2tf``), so a row is the single statement of how one tensor corresponds to another.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # NumPy is imported where arrays are made, not to list a checkpoint
    import numpy as np

#: Transforms a rule may name. Each is its own inverse or has one below.
TRANSPOSE = "transpose"  # dense kernel [in, out] <-> nn.Linear weight [out, in]
# Einsum-dense layers (TF2 Model Garden, Keras MultiHeadAttention) keep the head axis apart.
#: query/key/value kernel [in, heads, head_size] -> merge the heads -> [in, out] -> transpose
MERGE_HEADS_OUT_T = "merge_heads_out_transpose"
#: attention output kernel [heads, head_size, out] -> merge the heads -> [in, out] -> transpose
MERGE_HEADS_IN_T = "merge_heads_in_transpose"
#: query/key/value bias [heads, head_size] -> [out]
MERGE_HEADS = "merge_heads"
#: transforms whose inverse needs the source shape (the head count is in no PyTorch shape)
SHAPE_AWARE = frozenset({MERGE_HEADS_OUT_T, MERGE_HEADS_IN_T, MERGE_HEADS})


@dataclass(frozen=True)
class Rule:
    source: str
    target: str
    transform: str | None = None
    #: the head the tensor belongs to (None: the encoder itself, present in every model)
    head: str | None = None
    #: the number a source name carries for layer 0: Keras functional models number their
    #: weighted layers in order (``layer_with_weights-4`` is encoder layer 0 when four embedding
    #: layers come first); target names always count from 0
    layer_offset: int = 0

    def _regex(self, pattern: str) -> re.Pattern:
        parts = re.split(r"(\{layer\})", pattern)
        body = "".join(r"(?P<layer>\d+)" if part == "{layer}" else re.escape(part) for part in parts)
        return re.compile(f"^{body}$")

    @property
    def source_regex(self) -> re.Pattern:
        return _compiled(self, "source")

    @property
    def target_regex(self) -> re.Pattern:
        return _compiled(self, "target")

    @property
    def per_layer(self) -> bool:
        return "{layer}" in self.source


_REGEX_CACHE: dict[tuple[Rule, str], re.Pattern] = {}


def _compiled(rule: Rule, side: str) -> re.Pattern:
    key = (rule, side)
    if key not in _REGEX_CACHE:
        _REGEX_CACHE[key] = rule._regex(getattr(rule, side))
    return _REGEX_CACHE[key]


@dataclass(frozen=True)
class Match:
    rule: Rule
    source: str
    target: str
    layer: int | None


def apply_transform(transform: str | None, array: np.ndarray) -> np.ndarray:
    """Source layout -> target layout (a view where possible)."""
    if transform is None:
        return array
    if transform == TRANSPOSE:
        return array.T
    if transform == MERGE_HEADS_OUT_T:
        n_in, heads, head_size = _dims(transform, array.shape, 3)
        return array.reshape(n_in, heads * head_size).T
    if transform == MERGE_HEADS_IN_T:
        heads, head_size, n_out = _dims(transform, array.shape, 3)
        return array.reshape(heads * head_size, n_out).T
    if transform == MERGE_HEADS:
        heads, head_size = _dims(transform, array.shape, 2)
        return array.reshape(heads * head_size)
    raise ValueError(f"unknown transform {transform!r}")


def transposed_matrix(transform: str | None, source_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The transform as a move of bytes: ``(rows, cols)`` when the target's bytes are the
    transpose of the source's read as a row-major rows x cols matrix, None when they are the
    source's bytes unchanged (a reshape); ValueError for a shape the transform cannot take as a
    matrix. What the compiled data path of ``tf2pt`` does instead of
    :func:`apply_transform`; the two agree bit for bit (tests/test_kernels.py)."""
    if transform is None or transform == MERGE_HEADS:
        return None
    if transform == TRANSPOSE:
        if len(source_shape) < 2:  # .T of a vector is the vector
            return None
        rows, cols = _dims(transform, source_shape, 2)
        return rows, cols
    if transform == MERGE_HEADS_OUT_T:
        n_in, heads, head_size = _dims(transform, source_shape, 3)
        return n_in, heads * head_size
    if transform == MERGE_HEADS_IN_T:
        heads, head_size, n_out = _dims(transform, source_shape, 3)
        return heads * head_size, n_out
    raise ValueError(f"unknown transform {transform!r}")


def invert_transform(transform: str | None, array: np.ndarray,
                     source_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Target layout -> source layout. The head-merging transforms lose the head count, so their
    inverse needs ``source_shape`` (the shape the source tensor has, or is to have)."""
    if transform is None:
        return array
    if transform == TRANSPOSE:
        return array.T
    if transform in SHAPE_AWARE:
        if source_shape is None:
            raise ValueError(f"the inverse of {transform!r} needs the source shape")
        source_shape = tuple(source_shape)
        if transformed_shape(transform, source_shape) != tuple(array.shape):
            raise ValueError(f"{transform!r}: shape {list(array.shape)} does not come from "
                             f"{list(source_shape)}")
        if transform == MERGE_HEADS:
            return array.reshape(source_shape)
        return array.T.reshape(source_shape)
    raise ValueError(f"unknown transform {transform!r}")


def transformed_shape(transform: str | None, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The target shape of a source tensor of ``shape``. A head-merging transform given a shape
    of the wrong rank leaves it as it is: the planner's shape check names that tensor."""
    if transform in SHAPE_AWARE and len(shape) != (2 if transform == MERGE_HEADS else 3):
        return tuple(shape)
    if transform == TRANSPOSE:
        return tuple(reversed(shape))
    if transform == MERGE_HEADS_OUT_T:
        n_in, heads, head_size = _dims(transform, shape, 3)
        return (heads * head_size, n_in)
    if transform == MERGE_HEADS_IN_T:
        heads, head_size, n_out = _dims(transform, shape, 3)
        return (n_out, heads * head_size)
    if transform == MERGE_HEADS:
        heads, head_size = _dims(transform, shape, 2)
        return (heads * head_size,)
    return tuple(shape)


def _dims(transform: str, shape, rank: int) -> tuple[int, ...]:
    if len(shape) != rank:
        raise ValueError(f"{transform!r} takes a rank-{rank} tensor, not shape {list(shape)}")
    return tuple(int(d) for d in shape)


@dataclass
class Mapping:
    rules: tuple[Rule, ...]
    #: source prefix that some exports add (``module/`` for TF-Hub); stripped before matching
    optional_prefixes: tuple[str, ...] = field(default_factory=tuple)

    def to_target(self, source_name: str) -> Match | None:
        # Planning, inspecting and diffing each ask for the same names several times.
        cache = self.__dict__.setdefault("_to_target_cache", {})
        if source_name not in cache:
            cache[source_name] = self._to_target(source_name)
        return cache[source_name]

    def _to_target(self, source_name: str) -> Match | None:
        name = source_name
        for prefix in self.optional_prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        for rule in self._candidates("source", name):
            m = rule.source_regex.match(name)
            if m:
                layer = int(m.group("layer")) - rule.layer_offset if rule.per_layer else None
                if layer is not None and layer < 0:
                    continue
                return Match(rule, source_name, _fill(rule.target, layer), layer)
        return None

    def to_source(self, target_name: str) -> Match | None:
        for rule in self._candidates("target", target_name):
            m = rule.target_regex.match(target_name)
            if m:
                layer = int(m.group("layer")) if rule.per_layer else None
                return Match(rule, _fill(rule.source, layer, rule.layer_offset), target_name, layer)
        return None

    def _candidates(self, side: str, name: str) -> list[Rule]:
        # Checkpoints hold thousands of names and tables dozens of rows: rather than trying each
        # row's regex on each name, index the rows by their "skeleton" (digit runs and {layer}
        # both read as '#'), so a name is matched against the one or two rows that can fit it.
        index = self.__dict__.get(f"_index_{side}")
        if index is None:
            index = {}
            for rule in self.rules:
                index.setdefault(_skeleton(getattr(rule, side).replace("{layer}", "0")), []).append(rule)
            self.__dict__[f"_index_{side}"] = index
        return index.get(_skeleton(name), [])

    def expected(self, num_layers: int, heads: Iterable[str | None]) -> list[Match]:
        """Every tensor a model with these heads must have, as matches (source and target)."""
        wanted = set(heads) | {None}
        out = []
        for rule in self.rules:
            if rule.head not in wanted:
                continue
            for layer in (range(num_layers) if rule.per_layer else [None]):
                out.append(Match(rule, _fill(rule.source, layer, rule.layer_offset),
                                 _fill(rule.target, layer), layer))
        return out


_DIGITS = re.compile(r"\d+")


def _skeleton(name: str) -> str:
    return _DIGITS.sub("#", name)


def _fill(pattern: str, layer: int | None, offset: int = 0) -> str:
    return pattern.replace("{layer}", str(layer + offset)) if layer is not None else pattern


# Names that training leaves in a checkpoint. A name counts as training state only when it is one
# of the standalone counters below, or a slot suffix appended to a tensor the model itself has:
# anything else stays "unknown" rather than being guessed into either bin.
TRAINING_COUNTERS = re.compile(
    r"^(global_step|beta1_power|beta2_power|\w*_power(_\d+)?|good_steps|loss_scale|"
    r"current_loss_scale|save_counter(/\.ATTRIBUTES/VARIABLE_VALUE)?|"
    r"optimizer/.*|.*/\.OPTIMIZER_SLOT/.*)$")
SLOT_SUFFIX = re.compile(
    r"^(?P<var>.+)/(?P<slot>adam_m|adam_v|Adam|Adam_\d+|Momentum|lamb_m|lamb_v|LAMB|LAMB_\d+|"
    r"Adagrad|Adadelta|Adadelta_\d+|RMSProp|RMSProp_\d+|Ftrl|Ftrl_\d+|ExponentialMovingAverage|"
    r"accumulator|Adafactor\w*|m|v)$")


def training_state_kind(name: str, is_model_tensor) -> str | None:
    """``"counter"``, ``"slot:<name>"`` or None. ``is_model_tensor(name)`` says whether a name is
    one of the model's own tensors, so that a slot is recognised only next to a real variable."""
    if TRAINING_COUNTERS.match(name):
        return "counter"
    m = SLOT_SUFFIX.match(name)
    if m and is_model_tensor(m.group("var")):
        return f"slot:{m.group('slot')}"
    return None
