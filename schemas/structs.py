"""msgspec mirrors of the message models: the typed fast path, generated from the models.

The pydantic models of `schemas.messages` are the one definition of every Kalshi
message. Validating with pydantic costs about 5 us a frame, which bounds any
consumer of typed messages near 200k frames/s (see docs/performance.md section 4.12).
This module derives from each model a msgspec Struct with the same
class name, field names, defaults and value types, decoded straight from the
bytes several times faster. Nothing is written twice: the mirrors are generated
at import from the models' own fields.

    Dollars, Contracts, Number   -> Decimal, exact (strings and JSON numbers read
                                    from their text, never through float)
    EpochS, EpochMs, Rfc3339     -> UTC datetimes, converted as the models convert
                                    (integers inline, anything else by the model's own
                                    validator for that field)
    nested models                -> their mirrors; tuples, lists, Optional, Literal kept

What the fast path does not do: it keeps no unknown fields (the models keep them in
`model_extra`), and it checks types rather than every value rule of a model (it
reads "NaN" as a Decimal, where a model refuses it). A frame it cannot decode as
it stands (a legacy integer-cent form, a payload chosen by shape, a value only the
model's rules accept) is parsed by the model and converted, so the result is always
the mirror holding the model's values. `Frame.message()` still gives the full
model; the recorder has stored the bytes either way.

    parse_struct(raw)   -> the mirror of the frame's type
    mirror(Model)       -> the mirror class of a model
"""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

import msgspec
from pydantic import BaseModel, TypeAdapter

from schemas.messages import base
from schemas.parse import MESSAGE_MODELS, parse_message

__all__ = [
    "STRUCTS",
    "mirror",
    "parse_struct",
    "struct_from_model",
]


class _Time:
    """How one kind of timestamp field is read: its wire form to a UTC datetime."""

    __slots__ = ("adapter", "memo", "unit_s")

    def __init__(self, annotated: Any, unit_s: float | None) -> None:
        self.adapter: TypeAdapter[dt.datetime] = TypeAdapter(annotated)
        self.unit_s = unit_s  # seconds per integer unit; None: integers are not this form
        self.memo: dict[int, dt.datetime] = {}  # recent integer values (bursts repeat them)

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        if type(value) is int and self.unit_s is not None:
            found = self.memo.get(value)
            if found is None:
                if len(self.memo) >= _TIME_MEMO:
                    self.memo.clear()
                # Exact for integer seconds and milliseconds (well inside a double's digits).
                found = self.memo[value] = dt.datetime.fromtimestamp(value * self.unit_s, dt.UTC)
            return found
        try:
            return self.adapter.validate_python(value)  # the model's own rules, exactly
        except Exception as exc:  # the model refuses it: the frame goes the model's way
            raise ValueError(str(exc)) from None


_TIME_MEMO: Final = 4096
_EPOCH_S: Final = _Time(base.EpochS, 1.0)
_EPOCH_MS: Final = _Time(base.EpochMs, 0.001)
_RFC3339: Final = _Time(base.Rfc3339, None)
#: What a timestamp field holds in the mirror until `__post_init__` converts it.
_RAW_TIME: Final = int | float | str


#: The models' field types (by the identity of their schema annotation), and what
#: the mirror holds instead.
_SPECIAL: Final[dict[int, Any]] = {
    id(get_args(annotated)[1]): kind
    for annotated, kind in (
        (base.Dollars, Decimal),
        (base.Contracts, Decimal),
        (base.Number, Decimal),
        (base.EpochS, _EPOCH_S),
        (base.EpochMs, _EPOCH_MS),
        (base.Rfc3339, _RFC3339),
    )
}

_mirrors: dict[type[BaseModel], type[msgspec.Struct]] = {}
#: Mirrors that cannot be decoded straight from bytes (a payload chosen by shape):
#: their frames always go through the model.
_via_model: set[type[msgspec.Struct]] = set()


class _Unmirrorable(Exception):
    """A field type msgspec cannot decode as the model does (a callable discriminator)."""


def _field_type(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extras = get_args(annotation)
        for extra in extras:
            special = _SPECIAL.get(id(extra))
            if special is not None:
                return special  # Decimal, or a `_Time` (see `_time_field`)
            if type(extra).__name__ == "Discriminator":
                raise _Unmirrorable(annotation)
        return _field_type(inner)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return mirror(annotation)
    if origin in (Union, types.UnionType):
        members = [_field_type(arg) for arg in get_args(annotation)]
        if any(isinstance(m, _Time) for m in members):
            raise _Unmirrorable(annotation)  # only `time` and `time | None` are read here
        structs = [m for m in members if isinstance(m, type) and issubclass(m, msgspec.Struct)]
        if len(structs) > 1:
            raise _Unmirrorable(annotation)  # untagged unions of objects
        return Union[tuple(members)]  # noqa: UP007 - built at run time
    if origin is tuple:
        args = get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple[_field_type(args[0]), ...]  # type: ignore[misc]
        return tuple[tuple(_field_type(a) for a in args)]  # type: ignore[misc]
    if origin is list:
        return list[_field_type(get_args(annotation)[0])]  # type: ignore[misc]
    if origin is dict:
        key, value = get_args(annotation)
        return dict[_field_type(key), _field_type(value)]  # type: ignore[misc]
    if origin is Literal:
        return annotation
    return annotation


def _time_field(annotation: Any) -> tuple[Any, _Time] | None:
    """(mirror type, converter) of a timestamp field (`time` or `time | None`), else None."""
    kind = _SPECIAL.get(id(_schema_of(annotation)))
    if isinstance(kind, _Time):
        return _RAW_TIME, kind
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            kind = _SPECIAL.get(id(_schema_of(rest[0])))
            if isinstance(kind, _Time):
                return _RAW_TIME | None, kind
    return None


def _schema_of(annotation: Any) -> Any:
    """The first metadata item of an Annotated type (what `_SPECIAL` is keyed by)."""
    if get_origin(annotation) is Annotated:
        return get_args(annotation)[1]
    return None


def _post_init(fields: list[tuple[str, _Time]]) -> Any:
    """A `__post_init__` that turns the raw timestamps of `fields` into datetimes."""
    setter = msgspec.structs.force_setattr

    def __post_init__(self: Any) -> None:
        for name, convert in fields:
            setter(self, name, convert(getattr(self, name)))

    return __post_init__


def mirror(model: type[BaseModel]) -> type[msgspec.Struct]:
    """The msgspec Struct mirroring `model` (generated once, then cached).

    A message model's mirror is tagged with its `type`, so a union of mirrors decodes
    any frame in one pass.
    """
    found = _mirrors.get(model)
    if found is not None:
        return found
    required: list[tuple[str, Any]] = []
    optional: list[tuple[str, Any, Any]] = []
    times: list[tuple[str, _Time]] = []
    tag: str | None = None
    direct = True
    for name, info in model.model_fields.items():
        if name == "type" and get_origin(info.annotation) is Literal:
            tag = get_args(info.annotation)[0]
            continue
        annotation = info.rebuild_annotation()
        time_field = _time_field(annotation)
        try:
            if time_field is not None:
                kind, convert = time_field
                times.append((name, convert))
            else:
                kind = _field_type(annotation)
        except _Unmirrorable:
            kind, direct = Any, False
        if info.is_required():
            required.append((name, kind))
        else:
            default = info.default if info.default_factory is None else info.default_factory()  # type: ignore[call-arg]
            optional.append((name, kind, default))
    options: dict[str, Any] = {"gc": False, "frozen": True, "module": __name__}
    if tag is not None:
        options.update(tag=tag, tag_field="type")
    if times:
        options["namespace"] = {"__post_init__": _post_init(times)}
    struct = msgspec.defstruct(model.__name__, [*required, *optional], **options)
    struct.__doc__ = f"msgspec mirror of `{model.__module__}.{model.__qualname__}`."
    if tag is not None:
        struct.type = tag  # type: ignore[attr-defined]  # `message.type`, as on the model
    _mirrors[model] = struct
    if not direct:
        _via_model.add(struct)
    return struct


def struct_from_model(message: BaseModel) -> msgspec.Struct:
    """The mirror of a parsed model, holding the model's values."""
    cls = mirror(type(message))
    values = {name: _mirror_value(getattr(message, name)) for name in type(message).model_fields}
    values.pop("type", None)
    return cls(**values)


def _mirror_value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return struct_from_model(value)
    if isinstance(value, tuple):
        return tuple(_mirror_value(v) for v in value)
    if isinstance(value, list):
        return [_mirror_value(v) for v in value]
    return value


#: Message type -> its mirror.
STRUCTS: Final[dict[str, type[msgspec.Struct]]] = {
    type_: mirror(model) for type_, model in MESSAGE_MODELS.items()
}


def _decoder() -> Callable[[bytes | bytearray | memoryview], Any]:
    direct = tuple(s for s in STRUCTS.values() if s not in _via_model)
    union: Any = direct[0]
    for struct in direct[1:]:
        union = union | struct
    return msgspec.json.Decoder(union, strict=False).decode


_decode: Final = _decoder()
_FALLBACK: Final = (msgspec.ValidationError, msgspec.DecodeError, ValueError, RecursionError)


def parse_struct(raw: bytes | bytearray | memoryview) -> Any:
    """Parse one server frame into the msgspec mirror of its model.

    Raises:
        The errors of `schemas.parse.parse_message` (EnvelopeError,
        UnknownMessageType, MessageValidationError) for a frame the model refuses.
    """
    try:
        return _decode(raw)
    except _FALLBACK:
        return struct_from_model(parse_message(bytes(raw)))
