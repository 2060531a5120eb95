"""One JSON codec for every record: encode to plain JSON values, decode by the record's own type hints.

The JSON keeps the shape the store and report.json always had (no type tags),
so run directories written before records existed still decode. A record may
declare one ``spread()`` field: keys the record does not name are kept there
and written back beside the named ones (family-specific costs, a runtime's
extra figures); any other record refuses an unknown key, naming it.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from scbp_edge.errors import RecordError

_SPREAD = "scbp_spread"
_TRANSIENT = "scbp_transient"
_LEGACY = "scbp_legacy"


def spread() -> Any:
    """A dict field that holds the keys a record does not name, written back flat beside the named ones."""
    return dataclasses.field(default_factory=dict, metadata={_SPREAD: True})


def transient(default_factory: Any) -> Any:
    """A field for analysis in this process that the codec never writes (and leaves at its default on reading)."""
    return dataclasses.field(default_factory=default_factory, repr=False, compare=False, metadata={_TRANSIENT: True})


def legacy(default: Any, *, before: Any) -> Any:
    """A field that is ``default`` now and read as ``before`` from records written before the field existed."""
    return dataclasses.field(default=default, metadata={_LEGACY: before})


def encode(obj: Any) -> Any:
    """``obj`` (records, lists, tuples, dicts, paths, scalars) as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if f.metadata.get(_TRANSIENT):
                continue
            value = encode(getattr(obj, f.name))
            if f.metadata.get(_SPREAD):
                out.update(value)
            else:
                out[f.name] = value
        return out
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def compact(record: Any) -> dict[str, Any]:
    """``record`` encoded without its unknown (None) fields: a store column as it was written before records."""
    return {k: v for k, v in encode(record).items() if v is not None}


def decode(tp: Any, data: Any, where: str = "") -> Any:
    """``data`` (plain JSON values) as type ``tp``; a value that does not fit raises :class:`RecordError`."""
    where = where or getattr(tp, "__name__", str(tp))
    if tp is Any or tp is object:
        return data
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _union(tp, data, where)
    if origin is Literal:
        if data not in get_args(tp):
            raise RecordError(f"{where}: {data!r} is not one of {', '.join(map(repr, get_args(tp)))}")
        return data
    if dataclasses.is_dataclass(tp):
        return _record(tp, data, where)
    if origin in (list, tuple):
        if not isinstance(data, (list, tuple)):
            raise RecordError(f"{where}: expected a list, got {type(data).__name__}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(data):
                raise RecordError(f"{where}: expected {len(args)} items, got {len(data)}")
            return tuple(decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True)))
        item = args[0] if args else Any
        out = [decode(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected an object, got {type(data).__name__}")
        value = get_args(tp)[1] if get_args(tp) else Any
        return {k: decode(value, v, f"{where}.{k}") for k, v in data.items()}
    return _scalar(tp, data, where)


def _union(tp: Any, data: Any, where: str) -> Any:
    args = get_args(tp)
    if data is None:
        if type(None) in args:
            return None
        raise RecordError(f"{where}: missing (null)")
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return decode(arg, data, where)
        except RecordError as exc:
            errors.append(str(exc))
    raise RecordError(errors[0] if len(errors) == 1 else f"{where}: fits none of {tp}: {'; '.join(errors)}")


def _scalar(tp: Any, data: Any, where: str) -> Any:
    if tp is float and isinstance(data, (int, float)) and not isinstance(data, bool):
        return float(data)
    if tp is int and isinstance(data, int) and not isinstance(data, bool):
        return data
    if tp in (str, bool) and isinstance(data, tp):
        return data
    if tp is Path and isinstance(data, str):
        return Path(data)
    if tp in (float, int, str, bool, Path):
        raise RecordError(f"{where}: expected {tp.__name__}, got {type(data).__name__} {data!r:.40}")
    raise RecordError(f"{where}: the codec cannot decode type {tp}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _record(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected an object, got {type(data).__name__}")
    hints, fields = _hints(cls), dataclasses.fields(cls)
    extra_field = next((f.name for f in fields if f.metadata.get(_SPREAD)), None)
    named = {f.name for f in fields if not f.metadata.get(_SPREAD) and not f.metadata.get(_TRANSIENT)}
    unknown = [k for k in data if k not in named]
    if unknown and extra_field is None:
        raise RecordError(f"{where}: unknown field '{unknown[0]}' (a newer scbp-edge wrote it, or it is damaged)")
    kwargs: dict[str, Any] = {}
    for f in fields:
        if f.name == extra_field:
            kwargs[f.name] = {k: data[k] for k in unknown}
        elif f.name in data:
            kwargs[f.name] = decode(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif _LEGACY in f.metadata:
            kwargs[f.name] = f.metadata[_LEGACY]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecordError(f"{where}: missing field '{f.name}'")
    return cls(**kwargs)
