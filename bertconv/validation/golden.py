"""Golden files: inputs and reference outputs stored in one ``.npz``, so that a CI job checks a
converted model against the original without the checkpoint or TensorFlow."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .inputs import INPUT_KEYS

METADATA_KEY = "__bertconv_metadata__"

def load_golden(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except (OSError, ValueError) as e:
        raise InputError(f"not a golden .npz file: {e}", path=path) from None
    metadata = {}
    if METADATA_KEY in arrays:
        try:
            metadata = json.loads(str(arrays.pop(METADATA_KEY)))
        except json.JSONDecodeError:
            raise InputError("its metadata entry is not valid JSON", path=path) from None
    missing = [k for k in INPUT_KEYS if k not in arrays]
    if missing:
        raise InputError(f"golden file lacks the inputs {', '.join(missing)}", path=path)
    inputs = {k: arrays.pop(k).astype(np.int64) for k in INPUT_KEYS}
    if not arrays:
        raise InputError("golden file holds inputs but no outputs", path=path)
    return inputs, arrays, metadata


def save_golden_file(path: str | Path, inputs, reference, metadata: dict[str, Any], *,
                     overwrite: bool = False) -> None:
    from ..atomic import atomic_file

    with atomic_file(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would otherwise append ".npz" to the name
            np.savez(f, **{k: np.asarray(v) for k, v in inputs.items()},
                     **{k: np.asarray(v, dtype=np.float64) for k, v in reference.items()},
                     **{METADATA_KEY: np.array(json.dumps(metadata, sort_keys=True))})
