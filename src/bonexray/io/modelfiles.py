"""Saving models as byte-stable files: the same weights and config give the same bytes.

A `.keras` file and a skops file are both zip archives that carry the moment they were
written (zip member timestamps; Keras's metadata.json "date_saved") and, for skops, the
memory addresses of the saved objects (member names and "__id__" fields) and the
uninitialised padding bytes of scikit-learn's tree node records. A retrained but
unchanged model would re-hash and `dvc push` would upload it again on every run. Every
model the pipeline saves goes through `save_keras` or `dump_skops`, which write the file
with the library and then rewrite the zip in canonical form (`canonical_zip`); both
libraries still load the result.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip member can carry
MEMBER_MODE = 0o644
KERAS_METADATA = "metadata.json"
KERAS_CONFIG = "config.json"
KERAS_DATE = "1980-01-01@00:00:00"  # Keras's own date_saved format, so readers still parse it
SKOPS_SCHEMA = "schema.json"

# An archive's members, name -> bytes, in archive order. A rewrite may change names and
# contents but keeps the order and the count: each member keeps its compression by position.
Members = dict[str, bytes]


def canonical_zip(path: str | Path, rewrite: Callable[[Members], Members] | None = None) -> None:
    """Rewrite the zip at ``path`` in place: members sorted by name, fixed timestamps and
    permissions, each member's compression kept; ``rewrite`` may first change members."""
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        compression = {info.filename: info.compress_type for info in infos}
        members = {info.filename: archive.read(info) for info in infos}
    if rewrite is not None:
        renamed = rewrite(members)
        compression = dict(zip(renamed, compression.values(), strict=True))
        members = renamed
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out, zipfile.ZipFile(out, "w") as archive:
            for name in sorted(members):
                info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
                info.compress_type = compression[name]
                info.create_system = 3  # Unix, on every platform, so the mode bits mean the same
                info.external_attr = (0o100000 | MEMBER_MODE) << 16  # regular file, rw-r--r--
                archive.writestr(info, members[name])
        Path(temporary).chmod(path.stat().st_mode)  # mkstemp's 0600 would replace it
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _renumbered(node: Any, id_key: str, ordinal: dict[int, int]) -> Any:
    """The JSON tree with every int under ``id_key`` (a memory address) replaced by its order
    of first appearance: one to one, so objects that shared an id still share one."""
    if isinstance(node, dict):
        return {
            key: ordinal.setdefault(value, len(ordinal))
            if key == id_key and isinstance(value, int)
            else _renumbered(value, id_key, ordinal)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renumbered(item, id_key, ordinal) for item in node]
    return node


def _keras_members(members: Members) -> Members:
    """date_saved fixed; config.json's shared_object_id (the id() of an object several layers
    share, e.g. a dtype policy) renumbered."""
    metadata = json.loads(members[KERAS_METADATA])
    metadata["date_saved"] = KERAS_DATE
    config = _renumbered(json.loads(members[KERAS_CONFIG]), "shared_object_id", {})
    return {
        **members,
        KERAS_METADATA: json.dumps(metadata).encode(),
        KERAS_CONFIG: json.dumps(config).encode(),
    }


def save_keras(model: Any, path: str | Path) -> None:
    """model.save(path), then made byte-stable (timestamps, date_saved, object ids fixed)."""
    model.save(path)
    canonical_zip(path, _keras_members)


_SKOPS_FILE = re.compile(r"(\d+)\.npy")


def _zero_padding(data: bytes) -> bytes:
    """A saved .npy array whose record type has padding (scikit-learn's tree nodes: 57 bytes
    of fields in 64), rewritten with the padding zeroed: it held whatever memory the tree
    was built in. Other arrays are returned unchanged."""
    array = np.load(io.BytesIO(data), allow_pickle=False)
    fields = array.dtype.fields
    if not fields or sum(dtype.itemsize for dtype, *_ in fields.values()) == array.dtype.itemsize:
        return data
    clean = np.zeros(array.shape, array.dtype)  # calloc: padding zeroed (zeros_like is not)
    for name in fields:
        clean[name] = array[name]
    out = io.BytesIO()
    np.save(out, clean, allow_pickle=False)
    return out.getvalue()


def _skops_members(members: Members) -> Members:
    """Object ids (memory addresses) replaced by their order of first appearance in the
    schema, in both "__id__" fields and array member names: a renaming one to one, so the
    objects that shared an id (skops's memo) still share one. Padding in arrays zeroed."""
    ordinal: dict[int, int] = {}
    schema = _renumbered(json.loads(members[SKOPS_SCHEMA]), "__id__", ordinal)

    def renamed_file(node: Any) -> Any:  # "file": "<id>.npy" names an array member
        if isinstance(node, dict):
            return {
                key: _array_name(value, ordinal)
                if key == "file" and isinstance(value, str) and _SKOPS_FILE.fullmatch(value)
                else renamed_file(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [renamed_file(item) for item in node]
        return node

    schema = renamed_file(schema)
    renamed = {}
    for name, data in members.items():
        if _SKOPS_FILE.fullmatch(name):
            name = _array_name(name, ordinal)
            data = _zero_padding(data)
        renamed[name] = data
    renamed[SKOPS_SCHEMA] = json.dumps(schema, indent=2).encode()
    return renamed


def _array_name(name: str, ordinal: dict[int, int]) -> str:
    value = int(name.removesuffix(".npy"))
    return f"{ordinal.setdefault(value, len(ordinal))}.npy"


def dump_skops(obj: Any, path: str | Path) -> None:
    """skops.io.dump(obj, path), then made byte-stable (ids renumbered, timestamps fixed)."""
    import skops.io

    skops.io.dump(obj, path)
    canonical_zip(path, _skops_members)
