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

Messages (tensorflow/core/protobuf/{saved_model,meta_graph,saved_object_graph}.proto,
core/framework/{graph,node_def,attr_value,tensor}.proto, tf_keras/protobuf/saved_metadata.proto),
with the field numbers read here::

    SavedModel        { int64 saved_model_schema_version = 1; repeated MetaGraphDef meta_graphs = 2; }
    MetaGraphDef      { MetaInfoDef meta_info_def = 1; GraphDef graph_def = 2;
                        map<string, CollectionDef> collection_def = 4;
                        map<string, SignatureDef> signature_def = 5;
                        repeated AssetFileDef asset_file_def = 6; SavedObjectGraph object_graph_def = 7; }
    MetaInfoDef       { repeated string tags = 4; string tensorflow_version = 5; }
    SignatureDef      { map<string, TensorInfo> inputs = 1; map<string, TensorInfo> outputs = 2;
                        string method_name = 3; }
    TensorInfo        { string name = 1; DataType dtype = 2; }
    CollectionDef     { AnyList any_list = 5; }   AnyList { repeated Any value = 1; }
    Any               { string type_url = 1; bytes value = 2; }
    AssetFileDef      { TensorInfo tensor_info = 1; string filename = 2; }
    GraphDef          { repeated NodeDef node = 1; }
    NodeDef           { string name = 1; string op = 2; map<string, AttrValue> attr = 5; }
    AttrValue         { TensorProto tensor = 8; }
    TensorProto       { DataType dtype = 1; TensorShapeProto tensor_shape = 2; bytes tensor_content = 4;
                        repeated int32 int_val = 7; repeated int64 int64_val = 10; repeated bool bool_val = 11; }
    SavedObjectGraph  { repeated SavedObject nodes = 1; }
    SavedObject       { repeated ObjectReference children = 1; SavedUserObject user_object = 4;
                        SavedAsset asset = 5; SavedFunction function = 6; SavedVariable variable = 7;
                        SavedBareConcreteFunction bare_concrete_function = 8; SavedConstant constant = 9;
                        SavedResource resource = 10; CapturedTensor captured_tensor = 12; }
    SavedUserObject   { string identifier = 1; string metadata = 3; }
    SavedAsset        { int32 asset_file_def_index = 1; }
    SavedVariable     { DataType dtype = 1; TensorShapeProto shape = 2; bool trainable = 3; string name = 6; }
    SavedMetadata     { repeated SavedObject nodes = 1; }   (keras_metadata.pb)
      SavedObject     { int32 node_id = 2; string node_path = 3; string identifier = 4; string metadata = 5; }

Map fields are repeated entries ``{key = 1; value = 2}``.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointFormatError, InputError
from . import _wire
from ._wire import LENGTH_DELIMITED, VARINT, WireError
from .sstable import crc32c
from .tf_bundle import DTYPES, TFBundleSource

__all__ = [
    "HUB_MODULE_FILE",
    "KERAS_METADATA_FILE",
    "SAVED_MODEL_FILE",
    "AssetFile",
    "KerasObject",
    "MetaGraph",
    "SavedModelSource",
    "SavedObject",
    "SavedVariable",
    "Signature",
    "parse_keras_metadata",
    "parse_saved_model",
    "saved_model_directory",
]

SAVED_MODEL_FILE = "saved_model.pb"
SAVED_MODEL_TEXT_FILE = "saved_model.pbtxt"
HUB_MODULE_FILE = "tfhub_module.pb"
KERAS_METADATA_FILE = "keras_metadata.pb"
ASSETS_DIRECTORY = "assets"
VARIABLES_PREFIX = Path("variables") / "variables"
#: the collection a TF1 SavedModel names its assets in (``tf.saved_model.ASSETS_KEY``)
ASSETS_COLLECTION = "saved_model_assets"
ASSET_FILE_DEF_TYPE = "type.googleapis.com/tensorflow.AssetFileDef"
TOKENIZATION_SIGNATURE = "tokenization_info"
#: the root object's children in tf-models-official's TF Hub exports
VOCAB_ASSET, LOWER_CASE_VARIABLE = "vocab_file", "do_lower_case"
#: config fields that make a Keras object's config an encoder's (tf-models' BertEncoder and kin)
ENCODER_FIELDS = ("vocab_size", "hidden_size", "num_layers")
_DT_BOOL, _DT_INT32, _DT_INT64 = 10, 3, 9
#: bytes per element of the Const dtypes decoded here (in ``tensor_content``)
_CONST_ITEM_BYTES = {_DT_BOOL: 1, _DT_INT32: 4, _DT_INT64: 8}
#: TensorProto's value fields: int_val (int32), int64_val, bool_val
_INT_VAL, _INT64_VAL, _BOOL_VAL = 7, 10, 11
_VARIABLE_VALUE = "VARIABLE_VALUE"

_KINDS = {4: "user_object", 5: "asset", 6: "function", 7: "variable", 8: "bare_concrete_function",
          9: "constant", 10: "resource", 12: "captured_tensor"}


# -- wire helpers ---------------------------------------------------------------------------------
def _fields(buf: bytes, message: str, kinds: dict[int, int]) -> dict[int, list]:
    """The values of the fields numbered in ``kinds`` (each checked to have that wire type)."""
    found: dict[int, list] = {}
    for number, wire_type, value in _wire.iter_fields(buf):
        if number in kinds:
            if wire_type != kinds[number]:
                raise WireError(f"{message} field {number} has wire type {wire_type}, expected {kinds[number]}")
            found.setdefault(number, []).append(value)
    return found


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="surrogateescape")


def _last_text(found: dict[int, list], number: int) -> str:
    return _text(found[number][-1]) if number in found else ""


def _last_int(found: dict[int, list], number: int, default: int = 0) -> int:
    return _wire.as_int64(found[number][-1]) if number in found else default


def _map_entries(raw_entries: list[bytes], message: str) -> list[tuple[str, bytes]]:
    """``map<string, Message>`` entries as ``(key, value bytes)``."""
    out = []
    for raw in raw_entries:
        entry = _fields(raw, message, {1: LENGTH_DELIMITED, 2: LENGTH_DELIMITED})
        out.append((_last_text(entry, 1), entry.get(2, [b""])[-1]))
    return out


def _tensor_info_name(buf: bytes) -> str:
    return _last_text(_fields(buf, "TensorInfo", {1: LENGTH_DELIMITED}), 1)


def _shape(buf: bytes) -> tuple[int, ...] | None:
    dims = []
    for number, wire_type, value in _wire.iter_fields(buf):
        if number == 2 and wire_type == LENGTH_DELIMITED:
            dims.append(_last_int(_fields(value, "TensorShapeProto.Dim", {1: VARINT}), 1))
        elif number == 3 and wire_type == VARINT and value:
            return None  # unknown rank
    return tuple(dims)


def _dtype_name(code: int) -> str:
    dtype = DTYPES.get(code)
    return dtype.name if dtype is not None else f"dtype code {code}"


# -- the messages, as far as they are read ----------------------------------------------------------
@dataclass(frozen=True)
class Signature:
    """One ``SignatureDef``: its inputs and outputs by key, each the name of a graph tensor."""
    name: str
    inputs: dict[str, str]
    outputs: dict[str, str]
    method_name: str = ""


@dataclass(frozen=True)
class AssetFile:
    """An ``AssetFileDef``: the graph tensor that is fed the path of ``assets/<filename>``."""
    tensor_name: str
    filename: str


@dataclass(frozen=True)
class SavedVariable:
    name: str
    dtype: str
    shape: tuple[int, ...] | None
    trainable: bool


@dataclass(frozen=True)
class SavedObject:
    """One node of ``object_graph_def``. ``kind`` is the name of the set ``oneof`` field
    (``user_object``, ``asset``, ``variable``, ``function``...), "" when none is."""
    node_id: int
    children: tuple[_wire.ObjectReference, ...]
    kind: str
    identifier: str = ""
    metadata: str = ""
    asset_file_def_index: int | None = None
    variable: SavedVariable | None = None

    def child(self, local_name: str) -> int | None:
        return next((c.node_id for c in self.children if c.local_name == local_name), None)


def _parse_saved_object(node_id: int, buf: bytes) -> SavedObject:
    children = []
    kind = ""
    identifier = metadata = ""
    asset_index = None
    variable = None
    for number, wire_type, value in _wire.iter_fields(buf):
        if number == 1 and wire_type == LENGTH_DELIMITED:
            ref = _fields(value, "ObjectReference", {1: VARINT, 2: LENGTH_DELIMITED})
            children.append(_wire.ObjectReference(_wire.as_int32(_last_int(ref, 1)), _last_text(ref, 2)))
        elif number in _KINDS:
            if wire_type != LENGTH_DELIMITED:
                raise WireError(f"SavedObject field {number} has wire type {wire_type}")
            kind = _KINDS[number]
            if number == 4:
                user = _fields(value, "SavedUserObject", {1: LENGTH_DELIMITED, 3: LENGTH_DELIMITED})
                identifier, metadata = _last_text(user, 1), _last_text(user, 3)
            elif number == 5:
                asset_index = _wire.as_int32(_last_int(_fields(value, "SavedAsset", {1: VARINT}), 1))
            elif number == 7:
                var = _fields(value, "SavedVariable", {1: VARINT, 2: LENGTH_DELIMITED, 3: VARINT,
                                                       6: LENGTH_DELIMITED})
                variable = SavedVariable(_last_text(var, 6), _dtype_name(_last_int(var, 1)),
                                         _shape(var[2][-1]) if 2 in var else (), bool(_last_int(var, 3)))
    return SavedObject(node_id, tuple(children), kind, identifier, metadata, asset_index, variable)


@dataclass(frozen=True)
class MetaGraph:
    """One ``MetaGraphDef``. The graph and the object graph stay serialized until asked for:
    a TF2 export's function library is most of the file and nothing here reads it."""
    tags: tuple[str, ...]
    tensorflow_version: str
    signatures: dict[str, Signature]
    #: ``asset_file_def`` (TF2 and newer TF1 writers), then the ``saved_model_assets`` collection
    asset_files: tuple[AssetFile, ...]
    _graph_def: bytes = field(repr=False, default=b"")
    _object_graph_def: bytes = field(repr=False, default=b"")

    @functools.cached_property
    def _raw_objects(self) -> tuple[bytes, ...]:
        return tuple(value for number, wire_type, value in _wire.iter_fields(self._object_graph_def)
                     if number == 1 and wire_type == LENGTH_DELIMITED)

    @functools.cached_property
    def objects(self) -> tuple[SavedObject, ...]:
        """``object_graph_def``'s nodes (node 0 is the root); empty for TF1 SavedModels."""
        return tuple(_parse_saved_object(i, raw) for i, raw in enumerate(self._raw_objects))

    def object_at(self, node_id: int) -> SavedObject | None:
        """One node of ``object_graph_def`` (None outside it), parsed alone: a BERT-Base export
        has thousands of nodes, and finding the vocabulary needs two of them."""
        if "objects" in self.__dict__:
            return self.objects[node_id] if 0 <= node_id < len(self.objects) else None
        raw = self._raw_objects
        return _parse_saved_object(node_id, raw[node_id]) if 0 <= node_id < len(raw) else None

    def node_def(self, name: str) -> tuple[str, dict[str, bytes]] | None:
        """``(op, attrs as serialized AttrValue)`` of the graph node ``name``, or None."""
        wanted = name.encode("utf-8", errors="surrogateescape")
        for number, wire_type, raw in _wire.iter_fields(self._graph_def):
            if number != 1 or wire_type != LENGTH_DELIMITED:
                continue
            node = _fields(raw, "NodeDef", {1: LENGTH_DELIMITED, 2: LENGTH_DELIMITED, 5: LENGTH_DELIMITED})
            if node.get(1, [b""])[-1] == wanted:
                return _last_text(node, 2), dict(_map_entries(node.get(5, []), "NodeDef.AttrEntry"))
        return None

    def asset_for_tensor(self, tensor_name: str) -> str | None:
        return next((a.filename for a in self.asset_files if a.tensor_name == tensor_name), None)


def _parse_signature(name: str, buf: bytes) -> Signature:
    sig = _fields(buf, "SignatureDef", {1: LENGTH_DELIMITED, 2: LENGTH_DELIMITED, 3: LENGTH_DELIMITED})
    inputs = {key: _tensor_info_name(value) for key, value in _map_entries(sig.get(1, []), "SignatureDef.inputs")}
    outputs = {key: _tensor_info_name(value) for key, value in _map_entries(sig.get(2, []), "SignatureDef.outputs")}
    return Signature(name, inputs, outputs, _last_text(sig, 3))


def _asset_file(buf: bytes) -> AssetFile:
    asset = _fields(buf, "AssetFileDef", {1: LENGTH_DELIMITED, 2: LENGTH_DELIMITED})
    return AssetFile(_tensor_info_name(asset[1][-1]) if 1 in asset else "", _last_text(asset, 2))


def _assets_in_collection(buf: bytes) -> list[AssetFile]:
    collection = _fields(buf, "CollectionDef", {5: LENGTH_DELIMITED})
    out = []
    for any_list in collection.get(5, []):
        for raw_any in _fields(any_list, "CollectionDef.AnyList", {1: LENGTH_DELIMITED}).get(1, []):
            packed = _fields(raw_any, "Any", {1: LENGTH_DELIMITED, 2: LENGTH_DELIMITED})
            if _last_text(packed, 1) == ASSET_FILE_DEF_TYPE:
                out.append(_asset_file(packed.get(2, [b""])[-1]))
    return out


def _parse_meta_graph(buf: bytes) -> MetaGraph:
    meta = _fields(buf, "MetaGraphDef", {1: LENGTH_DELIMITED, 2: LENGTH_DELIMITED, 4: LENGTH_DELIMITED,
                                         5: LENGTH_DELIMITED, 6: LENGTH_DELIMITED, 7: LENGTH_DELIMITED})
    tags: tuple[str, ...] = ()
    version = ""
    if 1 in meta:
        info = _fields(meta[1][-1], "MetaInfoDef", {4: LENGTH_DELIMITED, 5: LENGTH_DELIMITED})
        tags = tuple(_text(t) for t in info.get(4, []))
        version = _last_text(info, 5)
    signatures = {key: _parse_signature(key, value)
                  for key, value in _map_entries(meta.get(5, []), "MetaGraphDef.signature_def")}
    assets = [_asset_file(raw) for raw in meta.get(6, [])]
    for key, value in _map_entries(meta.get(4, []), "MetaGraphDef.collection_def"):
        if key == ASSETS_COLLECTION:
            assets += [a for a in _assets_in_collection(value) if a not in assets]
    return MetaGraph(tags, version, signatures, tuple(assets), meta.get(2, [b""])[-1], meta.get(7, [b""])[-1])


def parse_saved_model(buf: bytes) -> tuple[int, list[MetaGraph]]:
    """``(saved_model_schema_version, meta graphs)`` of a serialized ``SavedModel``."""
    top = _fields(buf, "SavedModel", {1: VARINT, 2: LENGTH_DELIMITED})
    return _last_int(top, 1), [_parse_meta_graph(raw) for raw in top.get(2, [])]


def _const_value(attrs: dict[str, bytes]) -> bool | int | tuple[int, ...] | None:
    """The value of a bool or integer ``Const`` node, from its ``value`` attr's TensorProto: a
    scalar as a bool or int, a vector as a tuple of ints; None for any other dtype or rank.

    The values are in ``bool_val``/``int_val``/``int64_val`` (packed or not; fewer values than
    elements means the last one repeats, as TensorFlow writes a filled tensor) or, little-endian,
    in ``tensor_content``."""
    if "value" not in attrs:
        return None
    tensor_bytes = _fields(attrs["value"], "AttrValue", {8: LENGTH_DELIMITED}).get(8)
    if not tensor_bytes:
        return None
    dtype = 0
    shape: tuple[int, ...] | None = ()
    values: list[int] = []
    content = b""
    for number, wire_type, value in _wire.iter_fields(tensor_bytes[-1]):
        if number == 1 and wire_type == VARINT:
            dtype = value
        elif number == 2 and wire_type == LENGTH_DELIMITED:
            shape = _shape(value)
        elif number == 4 and wire_type == LENGTH_DELIMITED:
            content = value
        elif number in (_INT_VAL, _INT64_VAL, _BOOL_VAL) and wire_type == VARINT:
            values.append(value)
        elif number in (_INT_VAL, _INT64_VAL, _BOOL_VAL) and wire_type == LENGTH_DELIMITED:
            values += _packed(value)
    if dtype not in _CONST_ITEM_BYTES or shape is None or len(shape) > 1:
        return None
    count = shape[0] if shape else 1
    if content:
        width = _CONST_ITEM_BYTES[dtype]
        if len(content) != count * width:
            return None
        values = [int.from_bytes(content[i:i + width], "little", signed=dtype != _DT_BOOL)
                  for i in range(0, len(content), width)]
    elif values:
        values = [_wire.as_int64(v) for v in values] + [_wire.as_int64(values[-1])] * (count - len(values))
    if len(values) != count or count == 0:
        return None
    items = tuple(bool(v) for v in values) if dtype == _DT_BOOL else tuple(values)
    return items if shape else items[0]


def _packed(buf: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(buf):
        value, pos = _wire.read_varint(buf, pos)
        out.append(value)
    return out


# -- keras_metadata.pb ------------------------------------------------------------------------------
@dataclass(frozen=True)
class KerasObject:
    """A Keras object's saved metadata: ``class_name`` (``Text>BertEncoder``: tf-models' classes
    are registered under the package ``Text``), its ``name`` and ``config`` as the JSON says."""
    node_id: int
    node_path: str
    identifier: str
    class_name: str
    name: str
    config: Any


def _keras_object(node_id: int, node_path: str, identifier: str, metadata: str) -> KerasObject:
    described = json.loads(metadata) if metadata else {}
    if not isinstance(described, dict):
        described = {}
    return KerasObject(node_id, node_path, identifier, str(described.get("class_name", "")),
                       str(described.get("name", "")), described.get("config"))


def parse_keras_metadata(buf: bytes) -> list[KerasObject]:
    """The objects of a serialized ``SavedMetadata`` (``keras_metadata.pb``)."""
    out = []
    for raw in _fields(buf, "SavedMetadata", {1: LENGTH_DELIMITED}).get(1, []):
        node = _fields(raw, "SavedMetadata.SavedObject", {2: VARINT, 3: LENGTH_DELIMITED, 4: LENGTH_DELIMITED,
                                                          5: LENGTH_DELIMITED})
        out.append(_keras_object(_wire.as_int32(_last_int(node, 2)), _last_text(node, 3), _last_text(node, 4),
                                 _last_text(node, 5)))
    return out


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
        path = self.directory / ASSETS_DIRECTORY / filename
        return path if filename and path.is_file() else None

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
            if filename and self._asset_path(filename):
                return self._asset_path(filename)
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
