"""Every transform a mapping row may name keeps its own promises: the way back undoes the way
there bit for bit, its shape effect is the shape it produces, its byte move is what it does to the
array, and it is known by its name (tables, diff reports and JSON name it)."""
from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest

from bertconv.mapping.transforms import TRANSFORMS, TRANSPOSE, transform_named

#: a source shape each transform takes
SOURCE_SHAPES = {"transpose": (5, 7), "merge_heads_out_transpose": (6, 3, 4),
                 "merge_heads_in_transpose": (3, 4, 6), "merge_heads": (3, 4),
                 "conv1d_depthwise": (5, 6, 1), "conv1d_pointwise": (1, 6, 4), "conv1d_kernel": (1, 6, 4),
                 "column": (4,)}


def test_every_registered_transform_has_a_shape_here():
    assert set(SOURCE_SHAPES) == set(TRANSFORMS)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_a_transform_keeps_its_promises(name):
    transform, shape = TRANSFORMS[name], SOURCE_SHAPES[name]
    source = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    target = transform.apply(source)
    assert target.shape == transform.shape(shape)
    back = transform.invert(np.ascontiguousarray(target), source_shape=shape)
    assert back.shape == shape and back.tobytes() == source.tobytes()
    assert transform.source_shape(target.shape) == (None if transform.needs_source_shape else shape)
    matrix = transform.matrix(shape)
    moved = source.reshape(matrix).T if matrix is not None else source
    assert np.ascontiguousarray(moved).tobytes() == np.ascontiguousarray(target).tobytes()


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_a_transform_is_known_by_its_name(name):
    transform = TRANSFORMS[name]
    assert transform_named(name) is transform and transform == name and str(transform) == name
    assert copy.deepcopy(transform) is transform and pickle.loads(pickle.dumps(transform)) is transform
    assert json.dumps({"transform": transform}, default=str) == json.dumps({"transform": name})


def test_an_unknown_name_is_refused():
    with pytest.raises(ValueError, match="unknown transform 'rotate'"):
        transform_named("rotate")
    assert transform_named(None) is None and transform_named(TRANSPOSE) is TRANSPOSE
