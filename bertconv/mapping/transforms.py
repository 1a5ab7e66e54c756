"""How a source tensor's layout becomes the target's: the transforms a mapping row may name, each
with its inverse and its effect on shapes, in one place."""
from __future__ import annotations

from typing import TYPE_CHECKING

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
