"""Keras HDF5 weight files, Hugging Face's ``tf_model.h5`` among them.

Keras' ``save_weights`` (HDF5) layout: the root (or the ``model_weights`` group of a whole-model
file) lists its layers in the attribute ``layer_names``; each layer's group lists its weights in
``weight_names``, and each weight is a dataset at that path inside the layer's group. Keras splits
an attribute that would pass HDF5's 64 KB header limit into ``name0``, ``name1``, ...; both forms
are read. Tensor names are the weight names as stored, e.g.
``tf_bert_model/bert/encoder/layer_._0/attention/self/query/kernel:0``. A file without these
attributes is read as a plain tree: every dataset, named by its path.

Contiguous, uncompressed datasets are memory-mapped (zero copy, read-only); chunked or filtered
ones are read through h5py.

What a layout needs beyond the tensors is offered as data, read once when the file is opened (the
reader knows Keras' file, not the models in it):

- :attr:`KerasH5Source.layer_names`: every layer in the root's ``layer_names`` order (weightless
  layers included; the graph's order, which is not always the order the model was built in);
- :attr:`KerasH5Source.layer_weights`: layer -> the tensor names of its weights, in the order of
  the layer's ``weight_names`` (the order the layer created them: generated sub-layer names such
  as ``dense_10`` sort before ``dense_7``, so a layout maps by this order, never by sorted names);
- :meth:`KerasH5Source.model_config`: the ``model_config`` JSON that ``model.save()`` writes (the
  layers' classes and their constructor arguments), None for weights-only files.

Attributes are accepted both as ``bytes`` (older Keras and h5py) and as ``str`` (tf-keras 2.x
writes variable-length strings). Groups not listed in ``layer_names`` (tf-keras' empty
``top_level_model_weights``) hold no layer's weights and are skipped.
"""
from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import BertconvError, CheckpointFormatError, InputError
from .availability import require_available
from .base import TensorInfo, TensorSource

__all__ = ["KerasH5Source"]


#: what h5py raises on a damaged file, besides OSError: the HDF5 library's errors surface as
#: RuntimeError (a symbol table, an object visit), ValueError and KeyError (a header that decodes
#: to nonsense), TypeError and UnicodeDecodeError (an attribute of the wrong kind)
_H5_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError)
#: how many times its stored size a compressed dataset may expand to (deflate's limit is about
#: 1032): a damaged dataspace cannot make a read allocate more than the file could hold
_MAX_EXPANSION = 1100
_DAMAGED = "the file is damaged; download or copy it again"


@contextlib.contextmanager
def h5_errors(path: Path, tensor: str | None = None, what: str = "HDF5 structure") -> Iterator[None]:
    """h5py's and the HDF5 library's exceptions on a damaged file, as bertconv's one-line error
    naming the file (and the dataset)."""
    try:
        yield
    except BertconvError:
        raise
    except _H5_ERRORS as e:
        detail = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CheckpointFormatError(f"{what} does not read ({detail})", path=path, tensor=tensor,
                                    hint=_DAMAGED) from None


def _dtype_name(dtype: np.dtype) -> str:
    if dtype.kind in "SUO":
        return "string"
    return dtype.newbyteorder("=").name if dtype.byteorder in "<>" else dtype.name


def _attribute_list(group, name: str) -> list[str] | None:
    """A string-list attribute, whole or split into numbered chunks; None when absent."""
    attrs = group.attrs
    if name in attrs:
        values = list(attrs[name])
    elif f"{name}0" in attrs:
        values, index = [], 0
        while f"{name}{index}" in attrs:
            values.extend(attrs[f"{name}{index}"])
            index += 1
    else:
        return None
    return [_text(v) for v in values]


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class KerasH5Source(TensorSource):
    format_name = "keras-h5"

    def __init__(self, path: str | Path, directory: str | Path | None = None):
        super().__init__(path, directory)
        import h5py

        require_available(self.path, what="weights file")
        if not self.path.is_file():
            raise InputError("no such file", path=self.path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except _H5_ERRORS as e:
            raise CheckpointFormatError(f"not a readable HDF5 file ({e})", path=self.path) from None
        self._datasets: dict[str, object] = {}
        #: every layer, in the file's ``layer_names`` order (empty for a plain tree)
        self.layer_names: list[str] = []
        #: layer -> its weights' tensor names in ``weight_names`` order (only layers with weights)
        self.layer_weights: dict[str, list[str]] = {}
        self._model_config: str | None = None
        try:
            with h5_errors(self.path):
                self._index(h5py)
                self._listing = self._describe()
        except BaseException:
            self._h5.close()
            raise

    def _index(self, h5py) -> None:
        root = self._h5
        if "model_config" in root.attrs:
            self._model_config = _text(root.attrs["model_config"])
        if _attribute_list(root, "layer_names") is None and isinstance(root.get("model_weights"), h5py.Group):
            root = root["model_weights"]
        layer_names = _attribute_list(root, "layer_names")
        #: "keras" when the file's own weight lists were followed, "tree" for a plain walk
        self.layout = "keras" if layer_names is not None else "tree"
        if layer_names is None:
            def visit(path, obj):
                if isinstance(obj, h5py.Dataset):
                    self._datasets[path] = obj
            root.visititems(visit)
            return
        self.layer_names = layer_names
        for layer in layer_names:
            group = root.get(layer)
            if not isinstance(group, h5py.Group):
                raise CheckpointFormatError(f"layer {layer!r} is listed in layer_names but has no group",
                                            path=self.path)
            for weight in _attribute_list(group, "weight_names") or []:
                dataset = group.get(weight)
                if not isinstance(dataset, h5py.Dataset):
                    raise CheckpointFormatError(f"weight listed in layer {layer!r} has no dataset",
                                                path=self.path, tensor=weight)
                # Weight names carry the model's scope and so are unique in files Keras writes;
                # should two layers still share one, the layer name keeps them apart.
                name = weight if weight not in self._datasets else f"{layer}/{weight}"
                if name in self._datasets:
                    raise CheckpointFormatError("weight listed twice", path=self.path, tensor=name)
                self._datasets[name] = dataset
                self.layer_weights.setdefault(layer, []).append(name)

    def model_config(self) -> dict | None:
        """The parsed ``model_config`` attribute of a ``model.save()`` file (``{"class_name":
        ..., "config": {"layers": [...]}}``), or None when the file has none."""
        if self._model_config is None:
            return None
        try:
            return json.loads(self._model_config)
        except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
            raise CheckpointFormatError(f"the model_config attribute is not JSON ({e})", path=self.path) from None

    def _describe(self) -> list[TensorInfo]:
        """Every dataset's listing, each checked to fit in the file (read once, at opening: a
        damaged header then fails here, naming the file, rather than in whatever lists it)."""
        out = []
        file_size = self._h5.id.get_filesize()  # the HDF5 file's own (it may be a window of an archive)
        for name, dataset in self._datasets.items():
            with h5_errors(self.path, name, "dataset"):
                shape = tuple(int(d) for d in dataset.shape)
                dtype = _dtype_name(dataset.dtype)
                itemsize = dataset.dtype.itemsize if dtype != "string" else 0
                nbytes = math.prod(shape) * itemsize
                self._check_fits(dataset, name, nbytes, file_size)
            out.append(TensorInfo(name, dtype, shape, nbytes))
        return out

    def _check_fits(self, dataset, name: str, nbytes: int, file_size: int) -> None:
        if not nbytes:
            return
        stored = dataset.id.get_storage_size()
        compressed = bool(dataset.compression) or bool(getattr(dataset, "_filters", None))
        limit = stored * _MAX_EXPANSION if compressed else file_size
        offset = dataset.id.get_offset() if dataset.chunks is None else None
        if nbytes > limit or (offset is not None and offset + nbytes > file_size):
            raise CheckpointFormatError(f"dataset claims {nbytes} bytes (shape {list(dataset.shape)}), more than "
                                        f"the {file_size}-byte file holds", path=self.path, tensor=name,
                                        hint=_DAMAGED)

    def _list(self) -> list[TensorInfo]:
        listing = getattr(self, "_listing", None)
        if listing is None:  # a subclass that indexes its file itself
            with h5_errors(self.path):
                listing = self._listing = self._describe()
        return list(listing)

    def _read(self, name: str) -> np.ndarray:
        dataset = self._datasets[name]
        try:
            mapped = self._mapped(dataset)
            if mapped is not None:
                return mapped
            array = np.asarray(dataset[()])
        except _H5_ERRORS as e:
            raise CheckpointFormatError(f"cannot read dataset ({str(e)[:200]})", path=self.path, tensor=name,
                                        hint=_DAMAGED) from None
        if array.dtype.kind in "SU":
            array = array.astype(object)
        array.flags.writeable = False
        return array

    def _mapped(self, dataset) -> np.ndarray | None:
        if dataset.dtype.kind not in "biufc" or dataset.chunks is not None or dataset.size == 0:
            return None
        offset = dataset.id.get_offset()
        if offset is None:  # never written: HDF5 returns the fill value
            return None
        array = np.memmap(self.path, dtype=dataset.dtype, mode="r", offset=offset, shape=dataset.shape)
        return array.view(np.ndarray)

    def close(self) -> None:
        self._datasets = {}
        h5 = getattr(self, "_h5", None)
        if h5 is not None:
            h5.close()
