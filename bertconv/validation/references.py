"""The original's outputs: the family's independent float64 reference (or TensorFlow itself) over
the original checkpoint, read through its canonical names."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ..config import BertConfig, load_config_file
from ..errors import InputError

# ---------------------------------------------------------------------------------- references


def open_against(against, verify_crc: bool = True, step: int | None = None):
    """A (weights, close, layout) triple for a path, a TensorSource or a mapping of the original
    names to arrays (layout None where it cannot be known). A checkpoint of a family's
    non-canonical layout is read through the canonical names, a pure relayout of the same arrays."""
    if isinstance(against, (str, Path)):
        from ..families import detect_layout
        from ..families.views import canonical_view
        from ..formats import open_source

        source = open_source(against, verify_crc=verify_crc, step=step)
        try:
            source.require_data()
        except BaseException:
            source.close()
            raise
        layout = detect_layout(source.names(), source=source)
        if layout is not None:  # bound first: a bound table may no longer be the canonical one (module/)
            layout = layout.for_checkpoint(source.names(), source)
        weights = canonical_view(source, layout) if layout is not None else source
        return weights, source.close, _bound_layout(weights) or layout
    return against, lambda: None, _bound_layout(against)


def _bound_layout(weights):
    """The layout a canonical view is bound to; None for a reader (a Keras .h5 reader's own
    ``layout`` attribute is the word "keras" or "tree", not a layout)."""
    layout = getattr(weights, "layout", None)
    return layout if hasattr(layout, "layer_norm_eps") else None


def reference_config(against, converted_dict: dict[str, Any], given, family, layout=None, *,
                     settings: dict | None = None, notes: list[str] | None = None) -> tuple[BertConfig, str]:
    """The original's config: given, or the checkpoint's config file (one of ``family``'s, read
    with the numerics facts of ``layout``, the library that wrote the checkpoint), or (last) the
    converted model's own config with the source's activation name restored. ``settings``
    (``--set``) apply to a config file; what the files do not record is the converted model's."""
    from ..settings import preparer

    prepare = preparer(family, settings, notes, stated=converted_dict)
    if isinstance(given, BertConfig):
        return given, "given"
    if given is not None:
        return load_config_file(given, prepare=prepare), str(given)
    sidecar = getattr(against, "sidecar", None)
    found = family.find_config(against) if callable(sidecar) else None
    if found is not None:
        # read as the conversion read it (a view's layout is bound to this checkpoint)
        layout = layout or _bound_layout(against)
        if layout is None:
            config = load_config_file(found, prepare=prepare)
        else:
            shapes = against.shapes() if hasattr(against, "shapes") else {}
            config = layout.read_config(found, layout.infer_sizes(shapes) if layout.sizes_from_weights else {},
                                        prepare=prepare)
        meaning = layout.reference_activation.get(config.hidden_act) if layout is not None else None
        if meaning:  # e.g. a Hugging Face config's "gelu" is the erf form
            config = dataclasses.replace(config, hidden_act=meaning)
        return config, str(found)
    data = dict(converted_dict)
    source_act = (data.get("bertconv") or {}).get("source_hidden_act") if isinstance(data.get("bertconv"), dict) else None
    if source_act:
        data["hidden_act"] = source_act
    return BertConfig.from_dict(data), "the converted model's config"


def compute_reference(weights, config: BertConfig, inputs: dict[str, np.ndarray], kind: str, *,
                      family=None, tower: str | None = None, heads=None) -> dict[str, np.ndarray]:
    """The original's outputs, by ``family``'s reference (BERT's when None); ``kind``: ``numpy``
    (the float64 reference) or ``tf`` (TensorFlow itself); ``tower``: for checkpoints of several
    models, which one."""
    if kind not in ("numpy", "tf"):
        raise InputError(f"unknown reference {kind!r}", hint="choose numpy or tf")
    if family is None:
        from ..families import default_family
        family = default_family()
    return family.reference(weights, config, inputs, heads=heads, tower=tower, kind=kind)
