"""How a source tensor's layout becomes the target's: the transforms a mapping row may name.

A transform is an object that knows its whole job: :meth:`Transform.apply` (source layout ->
target layout), :meth:`Transform.invert` (the way back), :meth:`Transform.shape` (its effect on a
shape) and :meth:`Transform.matrix` (the transform as a move of bytes, what the compiled data path
does instead of ``apply``). A new transform is one subclass and one line in :data:`TRANSFORMS`;
nothing else dispatches on a transform's name.

Each transform is one shared instance and is known by its name: it prints as its name (in ``diff``
tables and ``--json``), compares equal to it, and a table row may name it by the string, which
:func:`transform_named` resolves. ``None`` in a row means the tensor is copied as it is; the
module-level functions below take ``None`` for that.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # NumPy is imported where arrays are made, not to list a checkpoint
    import numpy as np


class Transform:
    """One relayout of a tensor, named in mapping tables."""

    #: the name tables, reports and JSON use
    name: str = ""
    #: True when the inverse needs the source shape (the head count is in no PyTorch shape)
    needs_source_shape: bool = False

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Source layout -> target layout (a view where possible)."""
        raise NotImplementedError

    def invert(self, array: np.ndarray, source_shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Target layout -> source layout; ``source_shape`` is the shape the source tensor has, or
        is to have (required where :attr:`needs_source_shape`)."""
        raise NotImplementedError

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The target shape of a source tensor of ``shape``."""
        raise NotImplementedError

    def source_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """The shape of the source tensor a target tensor of ``shape`` comes from; None where the
        target's shape does not say (see :attr:`needs_source_shape`)."""
        return None

    def matrix(self, source_shape: tuple[int, ...]) -> tuple[int, int] | None:
        """``(rows, cols)`` when the target's bytes are the transpose of the source's read as a
        row-major rows x cols matrix, None when they are the source's bytes unchanged (a
        reshape); ValueError for a shape the transform cannot take as a matrix."""
        raise NotImplementedError

    def _dims(self, shape, rank: int) -> tuple[int, ...]:
        if len(shape) != rank:
            raise ValueError(f"{self.name!r} takes a rank-{rank} tensor, not shape {list(shape)}")
        return tuple(int(d) for d in shape)

    # A transform is known by its name: equal to it, hashed as it, printed as it, and one instance
    # per name (copies, as ``dataclasses.asdict`` makes, are the instance itself).
    def __eq__(self, other) -> bool:
        if isinstance(other, Transform):
            return other.name == self.name
        return isinstance(other, str) and other == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<transform {self.name}>"

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return transform_named, (self.name,)


class Transpose(Transform):
    """Dense kernel ``[in, out]`` <-> ``nn.Linear`` weight ``[out, in]`` (a vector is left as it is)."""

    name = "transpose"

    def apply(self, array):
        return array.T

    def invert(self, array, source_shape=None):
        return array.T

    def shape(self, shape):
        return tuple(reversed(shape))

    def source_shape(self, shape):
        return tuple(reversed(shape))

    def matrix(self, source_shape):
        if len(source_shape) < 2:  # .T of a vector is the vector
            return None
        rows, cols = self._dims(source_shape, 2)
        return rows, cols


class _MergeHeads(Transform):
    """Einsum-dense layers (TF2 Model Garden, Keras MultiHeadAttention) keep the head axis apart:
    the source's axes are merged into a matrix (or, at rank 2, a vector) of the PyTorch layout.
    ``merged`` says which axes make the matrix's rows and columns; ``transposed`` whether the
    matrix is then transposed (kernels are, biases are vectors)."""

    needs_source_shape = True
    rank: int
    transposed: bool

    def _matrix_of(self, dims: tuple[int, ...]) -> tuple[int, int]:
        raise NotImplementedError

    def apply(self, array):
        dims = self._dims(array.shape, self.rank)
        if not self.transposed:
            return array.reshape(_product(dims))
        return array.reshape(self._matrix_of(dims)).T

    def invert(self, array, source_shape=None):
        if source_shape is None:
            raise ValueError(f"the inverse of {self.name!r} needs the source shape")
        source_shape = tuple(source_shape)
        if self.shape(source_shape) != tuple(array.shape):
            raise ValueError(f"{self.name!r}: shape {list(array.shape)} does not come from "
                             f"{list(source_shape)}")
        return (array.T if self.transposed else array).reshape(source_shape)

    def shape(self, shape):
        # A shape of the wrong rank is left as it is: the planner's shape check names that tensor.
        if len(shape) != self.rank:
            return tuple(shape)
        dims = self._dims(shape, self.rank)
        if not self.transposed:
            return (_product(dims),)
        rows, cols = self._matrix_of(dims)
        return (cols, rows)

    def matrix(self, source_shape):
        if not self.transposed:
            return None
        return self._matrix_of(self._dims(source_shape, self.rank))

    def source_shape(self, shape, heads: int | None = None):
        """With the head count (a config's), the source shape is known: the one whose target shape
        is ``shape``."""
        if heads is None or not heads:
            return None
        if self.rank == 2:
            candidate = (heads, shape[0] // heads) if len(shape) == 1 else None
        elif self.name == "merge_heads_out_transpose":
            candidate = (shape[1], heads, shape[0] // heads) if len(shape) == 2 else None
        else:
            candidate = (heads, shape[1] // heads, shape[0]) if len(shape) == 2 else None
        return candidate if candidate is not None and self.shape(candidate) == tuple(shape) else None


class MergeHeadsOutTranspose(_MergeHeads):
    """Query/key/value kernel ``[in, heads, head_size]`` -> ``[in, out]`` -> transposed."""

    name = "merge_heads_out_transpose"
    rank, transposed = 3, True

    def _matrix_of(self, dims):
        n_in, heads, head_size = dims
        return n_in, heads * head_size


class MergeHeadsInTranspose(_MergeHeads):
    """Attention output kernel ``[heads, head_size, out]`` -> ``[in, out]`` -> transposed."""

    name = "merge_heads_in_transpose"
    rank, transposed = 3, True

    def _matrix_of(self, dims):
        heads, head_size, n_out = dims
        return heads * head_size, n_out


class MergeHeads(_MergeHeads):
    """Query/key/value bias ``[heads, head_size]`` -> ``[out]``."""

    name = "merge_heads"
    rank, transposed = 2, False


class Conv1dDepthwise(Transform):
    """Keras separable conv1d depthwise kernel ``[K, C, 1]`` -> ``nn.Conv1d(groups=C)`` weight ``[C, 1, K]``."""

    name = "conv1d_depthwise"

    def apply(self, array):
        return array.transpose(1, 2, 0)

    def invert(self, array, source_shape=None):
        return array.transpose(2, 0, 1)

    def shape(self, shape):
        return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)

    def source_shape(self, shape):
        return (shape[2], shape[0], shape[1])

    def matrix(self, source_shape):
        size, channels, one = self._dims(source_shape, 3)
        if one != 1:
            raise ValueError(f"{self.name!r} takes a depth multiplier of 1, not {one}")
        return size, channels


class Conv1dKernel(Transform):
    """A Keras/``tf.layers`` conv1d kernel ``[width, in, out]`` -> ``nn.Conv1d`` weight ``[out, in, width]``."""

    name = "conv1d_kernel"

    def apply(self, array):
        return array.transpose(2, 1, 0)

    def invert(self, array, source_shape=None):
        return array.transpose(2, 1, 0)

    def shape(self, shape):
        return tuple(reversed(shape))

    def source_shape(self, shape):
        return tuple(reversed(shape))

    def matrix(self, source_shape):
        width, channels, out = self._dims(source_shape, 3)
        if width != 1:  # three axes reversed are no transpose of a matrix
            raise ValueError(f"{self.name!r} of width {width} is not a matrix transpose")
        return channels, out


class Conv1dPointwise(Conv1dKernel):
    """Keras separable conv1d pointwise kernel ``[1, C, O]`` -> ``nn.Conv1d`` weight ``[O, C, 1]``:
    a conv1d kernel of width 1."""

    name = "conv1d_pointwise"


class Column(Transform):
    """A bias ``[O]`` -> the column ``[O, 1]`` a conv1d output is added to."""

    name = "column"

    def apply(self, array):
        return array.reshape(-1, 1)

    def invert(self, array, source_shape=None):
        return array.reshape(-1)

    def shape(self, shape):
        return (*shape, 1)

    def source_shape(self, shape):
        return tuple(shape[:-1])

    def matrix(self, source_shape):
        return None


def _product(dims) -> int:
    total = 1
    for d in dims:
        total *= d
    return total


#: Every transform a rule may name, by name.
TRANSFORMS: dict[str, Transform] = {t.name: t for t in (
    Transpose(), MergeHeadsOutTranspose(), MergeHeadsInTranspose(), MergeHeads(), Conv1dDepthwise(),
    Conv1dPointwise(), Conv1dKernel(), Column())}

TRANSPOSE = TRANSFORMS["transpose"]
MERGE_HEADS_OUT_T = TRANSFORMS["merge_heads_out_transpose"]
MERGE_HEADS_IN_T = TRANSFORMS["merge_heads_in_transpose"]
MERGE_HEADS = TRANSFORMS["merge_heads"]
CONV1D_KERNEL = TRANSFORMS["conv1d_kernel"]
#: transforms whose inverse needs the source shape
SHAPE_AWARE = frozenset(t for t in TRANSFORMS.values() if t.needs_source_shape)


def transform_named(transform: Transform | str | None) -> Transform | None:
    """The transform a table row names (an object, its name, or None for a plain copy)."""
    if transform is None or isinstance(transform, Transform):
        return transform
    try:
        return TRANSFORMS[transform]
    except (KeyError, TypeError):
        raise ValueError(f"unknown transform {transform!r}") from None


# The functions callers use on a rule's transform, which may be None (a plain copy).

def apply_transform(transform: Transform | str | None, array: np.ndarray) -> np.ndarray:
    """Source layout -> target layout (a view where possible)."""
    transform = transform_named(transform)
    return array if transform is None else transform.apply(array)


def transposed_matrix(transform: Transform | str | None, source_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """:meth:`Transform.matrix`, None for a plain copy. What the compiled data path of ``tf2pt``
    does instead of :func:`apply_transform`; the two agree bit for bit (tests/test_kernels.py)."""
    transform = transform_named(transform)
    return None if transform is None else transform.matrix(source_shape)


def invert_transform(transform: Transform | str | None, array: np.ndarray,
                     source_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Target layout -> source layout. The head-merging transforms lose the head count, so their
    inverse needs ``source_shape`` (the shape the source tensor has, or is to have)."""
    transform = transform_named(transform)
    return array if transform is None else transform.invert(array, source_shape)


def transformed_shape(transform: Transform | str | None, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The target shape of a source tensor of ``shape``. A head-merging transform given a shape
    of the wrong rank leaves it as it is: the planner's shape check names that tensor."""
    transform = transform_named(transform)
    return tuple(shape) if transform is None else transform.shape(shape)
