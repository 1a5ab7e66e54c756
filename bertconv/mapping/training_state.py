"""What training leaves in a checkpoint besides the model: optimizer slots, counters, loss scaling."""
from __future__ import annotations

import re

#: bookkeeping entries that are neither weights nor optimizer state
METADATA_NAMES = frozenset({"_CHECKPOINTABLE_OBJECT_GRAPH"})

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
