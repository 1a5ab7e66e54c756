"""The SavedModel messages bertconv reads, decoded from the protobuf wire format with
:mod:`._wire`'s field walker (why by hand: see :mod:`.saved_model`).

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
from typing import Any

from . import _wire
from ._wire import LENGTH_DELIMITED, VARINT, WireError
from .tf_bundle import DTYPES

__all__ = [
    "AssetFile",
    "KerasObject",
    "MetaGraph",
    "SavedObject",
    "SavedVariable",
    "Signature",
    "parse_keras_metadata",
    "parse_saved_model",
]

#: the collection a TF1 SavedModel names its assets in (``tf.saved_model.ASSETS_KEY``)
ASSETS_COLLECTION = "saved_model_assets"
ASSET_FILE_DEF_TYPE = "type.googleapis.com/tensorflow.AssetFileDef"
_DT_BOOL, _DT_INT32, _DT_INT64 = 10, 3, 9
#: bytes per element of the Const dtypes decoded here (in ``tensor_content``)
_CONST_ITEM_BYTES = {_DT_BOOL: 1, _DT_INT32: 4, _DT_INT64: 8}
#: the most elements a Const read here holds (a handful: a head count, a shape); a filled tensor
#: stores one value for all its elements, so its shape alone would say how much to allocate
_MAX_CONST_VALUES = 1 << 16
#: TensorProto's value fields: int_val (int32), int64_val, bool_val
_INT_VAL, _INT64_VAL, _BOOL_VAL = 7, 10, 11

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
    if not 0 < count <= _MAX_CONST_VALUES:
        return None  # not a constant read here; and a shape cannot make this allocate beyond the file
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
