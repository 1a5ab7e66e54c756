"""What training leaves in a checkpoint besides the model: optimizer slots, counters, loss scaling.

Recognised by rule, never by a growing list of optimizer names:

- a **slot** is ``<weight>/<name>`` (TF1 optimizers: ``adam_m``, ``Adam_1``, ``BERTAdam``,
  ``AdamWeightDecayOptimizer_1``, ``Momentum``, NVIDIA's ``accum`` and ``shadow``...) where
  ``<weight>`` is one of the model's own tensors and the slot has that tensor's shape: a slot can
  never be taken for a weight, since no weight is named below another one. Factored second
  moments (Adafactor) have a smaller shape: they are slots when each of their dimensions is one of
  the weight's;
- a TF2 object checkpoint says so outright: ``<object path>/.OPTIMIZER_SLOT/<optimizer>/<slot>/...``,
  and the optimizer's own variables live under ``optimizer/`` (a Keras model's own optimizer under
  ``<model>/optimizer/``); a Keras SavedModel keeps its
  compiled metrics' running totals under ``keras_api/metrics/``;
- a **counter** is a scalar whose last name component is a step count, a power of a decay rate,
  a loss scale or a finiteness flag (``global_step``, ``local_step``, ``beta1_power``,
  ``loss_scale``, ``current_loss_scale``, ``good_steps``, ``bad_steps``, ``batch_finite``,
  ``save_counter``...).

Whatever no rule explains stays unknown, and is listed.
"""
from __future__ import annotations

import re
from typing import Callable

#: bookkeeping entries that are neither weights nor optimizer state: the object graph, and the
#: tokenizer casing TF Hub exports keep as a variable (read by the SavedModel reader)
METADATA_NAMES = frozenset({"_CHECKPOINTABLE_OBJECT_GRAPH", "do_lower_case/.ATTRIBUTES/VARIABLE_VALUE"})

_TF2_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
_TF2_SLOT = re.compile(r"^(?P<var>.+)/\.OPTIMIZER_SLOT/(?P<optimizer>[^/]+)/(?P<slot>[^/]+)" + re.escape(_TF2_VALUE) + "$")
_TF2_OPTIMIZER = re.compile(r"^(.+/)?optimizer/")
_KERAS_METRIC = re.compile(r"^(.+/)?keras_api/metrics/")
_SLOT = re.compile(r"^(?P<var>.+)/(?P<slot>[A-Za-z_][A-Za-z0-9_]*)$")
#: the last name component of a training counter (a scalar)
_COUNTER = re.compile(r"^(\w*_)?(steps?|power(_\d+)?|loss_scale|finite|counter)$")


def training_state_kind(name: str, shape: tuple[int, ...],
                        model_shape: Callable[[str], tuple[int, ...] | None]) -> str | None:
    """``"counter"``, ``"slot:<name>"``, ``"optimizer"``, ``"metric"`` or None (not training state).

    ``shape`` is the tensor's own shape; ``model_shape(name)`` is the shape of one of the model's
    own tensors, or None when ``name`` is not one."""
    tf2 = _TF2_SLOT.match(name)
    if tf2:
        return f"slot:{tf2.group('slot')}"
    if _TF2_OPTIMIZER.match(name):
        return "optimizer"
    if _KERAS_METRIC.match(name):
        return "metric"
    stem = name[:-len(_TF2_VALUE)] if name.endswith(_TF2_VALUE) else name
    if _is_scalar(shape) and _COUNTER.match(stem.rsplit("/", 1)[-1]):
        return "counter"
    m = _SLOT.match(name)
    if m:
        weight = model_shape(m.group("var"))
        if weight is not None and (tuple(shape) == tuple(weight) or _factored(shape, weight, m.group("slot"))):
            return f"slot:{m.group('slot')}"
    return None


def _is_scalar(shape) -> bool:
    return all(d == 1 for d in shape)


def _factored(shape, weight, slot: str) -> bool:
    """Adafactor keeps a row and a column statistic for a matrix instead of its full square."""
    return "adafactor" in slot.lower() and 0 < len(shape) < len(weight) and all(d in weight for d in shape)
