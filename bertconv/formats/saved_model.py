"""SavedModel directories (``saved_model.pb`` + ``variables/variables.*``), without TensorFlow.

The weights are an ordinary tensor bundle under the prefix ``variables/variables``, read by
:class:`~bertconv.formats.tf_bundle.TFBundleSource`; this module adds what a conversion needs from
the rest of the directory, decoded from the protobuf wire format with :mod:`._wire`'s field walker
(for the same reason as there: a handful of fields of a few messages, where ``protobuf`` and
generated TensorFlow classes would be a large, version-sensitive dependency):

- TF1 Hub modules (``tfhub_module.pb`` beside it, Google's variable names): the
  ``tokenization_info`` signature's outputs, ``vocab_file`` (an asset: the signature names a
  tensor, the ``saved_model_assets`` collection or ``asset_file_def`` says which file of
  ``assets/`` feeds it) and ``do_lower_case`` (the tensor is the output of a bool ``Const`` node,
  its value ``attr["value"].tensor``).
- TF2 SavedModels (tf-models-official's TF Hub / Kaggle exports; the bundle's keys are
  positional, ``variables/N/...``, resolved through the checkpoint's object graph): the root
  object's ``vocab_file`` asset and ``do_lower_case`` variable (from ``object_graph_def``, whose
  node ids are the checkpoint object graph's), and the Keras objects' configs (``keras_metadata.pb``,
  or the ``metadata`` of each user object in ``saved_model.pb`` as older Keras versions wrote it),
  among them the encoder's sizes.
- any other SavedModel: its variables, listed like any bundle's.

The messages are decoded in :mod:`.saved_model_messages`.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from ..errors import CheckpointFormatError, InputError
from ._wire import WireError
from .availability import require_available
from .containment import contained
from .saved_model_messages import (KerasObject, MetaGraph, SavedObject, _const_value, _keras_object,
                                   parse_keras_metadata, parse_saved_model)
from .sstable import crc32c
from .tf_bundle import TFBundleSource

__all__ = [
    "HUB_MODULE_FILE",
    "KERAS_METADATA_FILE",
    "SAVED_MODEL_FILE",
    "SavedModelSource",
    "saved_model_directory",
]

SAVED_MODEL_FILE = "saved_model.pb"
SAVED_MODEL_TEXT_FILE = "saved_model.pbtxt"
HUB_MODULE_FILE = "tfhub_module.pb"
KERAS_METADATA_FILE = "keras_metadata.pb"
ASSETS_DIRECTORY = "assets"
VARIABLES_PREFIX = Path("variables") / "variables"
TOKENIZATION_SIGNATURE = "tokenization_info"
#: the root object's children in tf-models-official's TF Hub exports
VOCAB_ASSET, LOWER_CASE_VARIABLE = "vocab_file", "do_lower_case"
#: config fields that make a Keras object's config an encoder's (tf-models' BertEncoder and kin)
ENCODER_FIELDS = ("vocab_size", "hidden_size", "num_layers")
_VARIABLE_VALUE = "VARIABLE_VALUE"


def _nested_child(graph, local_name: str, depth: int = 3) -> int | None:
    """The node id of the first child named ``local_name`` of the root or of an object at most
    ``depth - 1`` steps below it, breadth first (None when there is none)."""
    level, seen = [0], {0}
    for _ in range(depth):
        following = []
        for node_id in level:
            for child in graph[node_id].children:
                if not 0 <= child.node_id < len(graph):
                    continue
                if child.local_name == local_name:
                    return child.node_id
                if child.node_id not in seen:
                    seen.add(child.node_id)
                    following.append(child.node_id)
        level = following
    return None


# -- the source -------------------------------------------------------------------------------------
def is_partial_keras_saved_model(directory: Path) -> bool:
    """A Keras SavedModel whose ``saved_model.pb`` is not here (a partial download) but whose
    ``keras_metadata.pb`` and variables' index are: its weights can still be listed."""
    return (not (directory / SAVED_MODEL_FILE).exists() and (directory / KERAS_METADATA_FILE).is_file()
            and Path(f"{directory / VARIABLES_PREFIX}.index").is_file())


def saved_model_directory(path: str | Path) -> Path:
    """The SavedModel directory for the directory itself or its ``saved_model.pb``."""
    given = Path(path)
    directory = given.parent if given.name == SAVED_MODEL_FILE and given.is_file() else given
    if not (directory / SAVED_MODEL_FILE).is_file() and not is_partial_keras_saved_model(directory):
        if (directory / SAVED_MODEL_TEXT_FILE).is_file():
            raise CheckpointFormatError(f"a text-format SavedModel ({SAVED_MODEL_TEXT_FILE}); bertconv reads "
                                        f"the binary {SAVED_MODEL_FILE}", path=directory,
                                        hint="re-save it with tf.saved_model.save")
        raise InputError(f"not a SavedModel directory (no {SAVED_MODEL_FILE})", path=directory)
    return directory


class SavedModelSource(TFBundleSource):
    """A SavedModel directory opened for reading: the variables of ``variables/variables`` (every
    :class:`TFBundleSource` method reads them), plus, as plain attributes:

    - ``meta_graphs`` (:class:`MetaGraph`), ``schema_version``, ``hub_module`` (a TF1 Hub module:
      ``tfhub_module.pb`` is present);
    - ``assets``: every file the SavedModel names as an asset, ``{filename: path}`` (present
      files only); ``vocab_file``: the vocabulary the model itself names (TF1: the
      ``tokenization_info`` signature's ``vocab_file``; TF2: the root object's ``vocab_file``
      asset), or None;
    - ``lower_case`` (read on first use): ``do_lower_case`` as the model records it (TF1: the
      signature's bool Const; TF2: the root's ``do_lower_case`` variable, read from the data
      file, so DataUnavailableError where that file is not here), None when it records none;
      ``lower_case_origin`` says which of the two it was;
    - ``graph_constant(name)``: the value of a bool or integer ``Const`` node of a TF1 graph;
    - ``keras_objects`` (:class:`KerasObject`, from ``keras_metadata.pb`` or, as older Keras
      wrote them, from ``saved_model.pb``'s user objects), ``encoder_config`` (the config of the
      first object whose config has vocab_size, hidden_size and num_layers) and ``encoder_class``.

    :meth:`sidecar` also looks in ``assets/``, and answers ``vocab.txt`` with ``vocab_file``.
    """

    format_name = "saved-model"

    def __init__(self, path: str | Path, *, verify_crc: bool = True):
        directory = saved_model_directory(path)
        prefix = directory / VARIABLES_PREFIX
        if not Path(f"{prefix}.index").is_file():
            raise CheckpointFormatError(f"a SavedModel without variables ({VARIABLES_PREFIX}.index is absent): "
                                        "it holds no weights to read", path=directory)
        super().__init__(prefix, verify_crc=verify_crc)
        self.path = self.directory = directory
        self.saved_model_path = directory / SAVED_MODEL_FILE
        self.hub_module = (directory / HUB_MODULE_FILE).is_file()
        if is_partial_keras_saved_model(directory):
            self.schema_version, self.meta_graphs = None, []
            self.notes.append(f"{SAVED_MODEL_FILE} is not here: the weights are listed from {VARIABLES_PREFIX}.index, "
                              f"the layers from {KERAS_METADATA_FILE}")
            self.assets, self.vocab_file = {}, None
            self.keras_objects = self._read_keras_objects()
            self._find_encoder()
            return
        require_available(self.saved_model_path, what="SavedModel file")
        try:
            self.schema_version, self.meta_graphs = parse_saved_model(self.saved_model_path.read_bytes())
        except OSError as err:
            raise InputError(f"cannot read ({err.strerror})", path=self.saved_model_path) from None
        except WireError as err:
            raise CheckpointFormatError(f"does not decode as a SavedModel ({err})", path=self.saved_model_path,
                                        hint="the file is damaged; download or copy it again") from None
        if not self.meta_graphs:
            raise CheckpointFormatError("holds no meta graph", path=self.saved_model_path)
        self.assets = self._present_assets()
        self.vocab_file = self._named_vocab_file()
        self.keras_objects = self._read_keras_objects()
        self._find_encoder()

    def _find_encoder(self) -> None:
        encoder = next((o for o in self.keras_objects if isinstance(o.config, dict)
                        and all(k in o.config for k in ENCODER_FIELDS)), None)
        self.encoder_config: dict | None = dict(encoder.config) if encoder else None
        self.encoder_class: str | None = encoder.class_name if encoder else None

    # -- what the directory names ---------------------------------------------------------------
    def _asset_path(self, filename: str) -> Path | None:
        """``assets/<filename>`` where it is a file inside the directory (see :mod:`.containment`:
        one that would lie outside is never opened, and a note says the model named one)."""
        if not filename:
            return None
        path = contained(self.directory, filename, under=ASSETS_DIRECTORY)
        if path is None:
            note = (f"{SAVED_MODEL_FILE} names an asset outside the SavedModel directory; it is not "
                    "read (files of the same role inside the directory are used instead)")
            if note not in self.notes:
                self.notes.append(note)
            return None
        return path if path.is_file() else None

    def _present_assets(self) -> dict[str, Path]:
        found = {}
        for meta_graph in self.meta_graphs:
            for asset in meta_graph.asset_files:
                path = self._asset_path(asset.filename)
                if path is not None:
                    found.setdefault(asset.filename, path)
        return found

    def _tokenization_graphs(self) -> list[MetaGraph]:
        # The default graph (tags []) first: that is what hub.Module loads without tags.
        graphs = [g for g in self.meta_graphs if TOKENIZATION_SIGNATURE in g.signatures]
        return sorted(graphs, key=lambda g: len(g.tags))

    def _named_vocab_file(self) -> Path | None:
        for meta_graph in self._tokenization_graphs():
            tensor = meta_graph.signatures[TOKENIZATION_SIGNATURE].outputs.get(VOCAB_ASSET)
            filename = meta_graph.asset_for_tensor(tensor) if tensor else None
            path = self._asset_path(filename) if filename else None
            if path is not None:
                return path
        for meta_graph in self.meta_graphs:
            root = self._root(meta_graph)
            asset_node = root.child(VOCAB_ASSET) if root else None
            asset = self._object_at(meta_graph, asset_node) if asset_node is not None else None
            if asset is None:
                continue
            index = asset.asset_file_def_index
            if index is not None and 0 <= index < len(meta_graph.asset_files):
                path = self._asset_path(meta_graph.asset_files[index].filename)
                if path is not None:
                    return path
        return None

    def _objects(self, meta_graph: MetaGraph) -> tuple[SavedObject, ...]:
        try:
            return meta_graph.objects
        except WireError as err:
            raise CheckpointFormatError(f"object graph does not decode ({err})", path=self.saved_model_path,
                                        hint="the file is damaged; download or copy it again") from None

    def _object_at(self, meta_graph: MetaGraph, node_id: int) -> SavedObject | None:
        try:
            return meta_graph.object_at(node_id)
        except WireError as err:
            raise CheckpointFormatError(f"object graph does not decode ({err})", path=self.saved_model_path,
                                        hint="the file is damaged; download or copy it again") from None

    def _root(self, meta_graph: MetaGraph) -> SavedObject | None:
        return self._object_at(meta_graph, 0)

    def _read_keras_objects(self) -> list[KerasObject]:
        metadata_path = self.directory / KERAS_METADATA_FILE
        try:
            if metadata_path.is_file():
                require_available(metadata_path, what="Keras metadata file")
                try:
                    return parse_keras_metadata(metadata_path.read_bytes())
                except OSError as err:
                    raise InputError(f"cannot read ({err.strerror})", path=metadata_path) from None
                except WireError as err:
                    raise CheckpointFormatError(f"does not decode as Keras metadata ({err})", path=metadata_path,
                                                hint="the file is damaged; download or copy it again") from None
            out = []
            for meta_graph in self.meta_graphs:
                if self._root(meta_graph) is None:
                    continue
                out += [_keras_object(o.node_id, "", o.identifier, o.metadata)
                        for o in self._objects(meta_graph) if o.kind == "user_object" and o.metadata]
                if out:
                    break
            return out
        except json.JSONDecodeError as err:
            where = metadata_path if metadata_path.is_file() else self.saved_model_path
            raise CheckpointFormatError(f"Keras metadata is not JSON ({err.msg} at character {err.pos})",
                                        path=where, hint="the file is damaged; download or copy it again") from None
        except RecursionError:
            where = metadata_path if metadata_path.is_file() else self.saved_model_path
            raise CheckpointFormatError("Keras metadata is JSON nested too deeply to read", path=where,
                                        hint="the file is damaged; download or copy it again") from None

    @functools.cached_property
    def _recorded_casing(self) -> tuple[bool | None, str | None]:
        """(``do_lower_case`` as the model records it, where), see the class docstring."""
        for meta_graph in self._tokenization_graphs():
            tensor = meta_graph.signatures[TOKENIZATION_SIGNATURE].outputs.get(LOWER_CASE_VARIABLE)
            value = self._constant_in(meta_graph, tensor.split(":")[0]) if tensor else None
            if isinstance(value, bool):
                return value, f"the {TOKENIZATION_SIGNATURE} signature of {SAVED_MODEL_FILE}"
        value = self._lower_case_variable()
        return value, (None if value is None else f"the SavedModel's {LOWER_CASE_VARIABLE} variable")

    @property
    def lower_case(self) -> bool | None:  # type: ignore[override]
        """``do_lower_case`` as the model records it (see the class docstring)."""
        return self._recorded_casing[0]

    @property
    def lower_case_origin(self) -> str | None:  # type: ignore[override]
        return self._recorded_casing[1]

    def graph_constant(self, node_name: str) -> bool | int | tuple[int, ...] | None:
        """The value of the bool or integer ``Const`` node ``node_name`` of a TF1 graph (the
        default graph, tags ``[]``, first), or None where no meta graph has such a node. A TF1
        Hub module records there what its variables' shapes do not (the attention head count is
        a Const of the reshape that splits the heads)."""
        for meta_graph in sorted(self.meta_graphs, key=lambda g: len(g.tags)):
            value = self._constant_in(meta_graph, node_name)
            if value is not None:
                return value
        return None

    def _constant_in(self, meta_graph: MetaGraph, node_name: str) -> bool | int | tuple[int, ...] | None:
        try:
            node = meta_graph.node_def(node_name)
            return _const_value(node[1]) if node is not None and node[0] == "Const" else None
        except WireError as err:
            raise CheckpointFormatError(f"graph does not decode ({err})", path=self.saved_model_path,
                                        hint="the file is damaged; download or copy it again") from None

    def object_graph(self):
        """As :meth:`TFBundleSource.object_graph`, parsed once: detection, the layout's table
        and ``lower_case`` all follow it."""
        if not hasattr(self, "_parsed_object_graph"):
            self._parsed_object_graph = super().object_graph()
        return self._parsed_object_graph

    def _lower_case_variable(self) -> bool | None:
        """The value of the root's ``do_lower_case`` variable (a bool scalar), None without one."""
        roots = [self._root(g) for g in self.meta_graphs]
        at_root = any(root is not None and root.child(LOWER_CASE_VARIABLE) is not None for root in roots)
        graph = self.object_graph()
        if not at_root and not graph:
            return None
        # A child of the root is saved under its own name (trackable_utils: the object path, then
        # /.ATTRIBUTES/VARIABLE_VALUE); the checkpoint's object graph says so too when its data is
        # here, and is asked first. A Keras model that loaded a Hub module as a layer holds the
        # module's variable deeper (``layer_with_weights-0/_func/do_lower_case``): the graph finds it.
        key: str | None = f"{LOWER_CASE_VARIABLE}/.ATTRIBUTES/{_VARIABLE_VALUE}" if at_root else None
        if graph:
            node_id = _nested_child(graph, LOWER_CASE_VARIABLE)
            if node_id is None:
                return None
            key = next((a.checkpoint_key for a in graph[node_id].attributes if a.name == _VARIABLE_VALUE), None)
        if key is None or key not in self:
            return None
        info = self.info(key)
        if info.dtype != "bool" or info.shape != ():
            return None
        # One byte, read as stored: reading it as an array would import NumPy, which nothing else
        # in a float32 conversion needs
        stored = self.stored_bytes(key)
        if stored is None:
            return bool(self.read(key))
        with stored.data:
            value = bytes(stored.data)
        if stored.crc32c is not None:
            self.confirm_crc32c(key, crc32c(value))
        return value != b"\x00"

    # -- side files -------------------------------------------------------------------------------
    def sidecar(self, *candidates: str) -> Path | None:
        """The first of ``candidates`` found: ``vocab.txt`` is the model's own vocabulary asset
        when it names a ``.txt`` one; otherwise a file of that name in the directory, then in
        ``assets/``."""
        for candidate in candidates:
            if candidate == "vocab.txt" and self.vocab_file is not None and self.vocab_file.suffix == ".txt":
                return self.vocab_file
            for base in (self.directory, self.directory / ASSETS_DIRECTORY):
                path = base / candidate
                if path.is_file():
                    return path
        return None
