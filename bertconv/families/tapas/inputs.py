"""Validation inputs shaped like a TAPAS example: the generated ``[CLS] question [SEP] rest``
rows, the second segment laid out as a table (header row, then rows of one- or two-token cells,
columns cycling), with the seven token-type columns filled as TAPAS' tokenizer fills them."""
from __future__ import annotations

import numpy as np

from .model import TOKEN_TYPES


def table_inputs(inputs: dict, config) -> dict:
    types = np.asarray(inputs["token_type_ids"])
    if types.ndim == 3:  # already TAPAS' seven columns (a golden file's, a text's)
        return inputs
    sizes = config.extra.get("type_vocab_sizes") or [config.type_vocab_size] + [1] * (TOKEN_TYPES - 1)
    columns = max(0, min(3, sizes[1] - 1))
    full = np.zeros(types.shape + (TOKEN_TYPES,), np.int64)
    full[..., 0] = types
    for b in range(types.shape[0]):
        table = np.flatnonzero(types[b] > 0)
        for k, t in enumerate(table):
            if not columns:
                break
            cell = (2 * k) // 3  # cells of two tokens and of one, in turn
            row = min(cell // columns, sizes[2] - 1)
            full[b, t, 1] = 1 + cell % columns
            full[b, t, 2] = row
            if row:
                full[b, t, 3] = (cell % 2) % sizes[3]
                full[b, t, 4] = (1 + row % 3) % sizes[4]
                full[b, t, 5] = (1 + (2 - row % 3)) % sizes[5]
                full[b, t, 6] = (cell % 4) % sizes[6]
    return {**inputs, "token_type_ids": full}
