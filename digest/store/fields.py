"""Pure: no I/O. JSON forms of dataclasses, driven by their fields.

`Codec(cls)` encodes an instance as a dict of its fields (defaults omitted, so stored rows
stay small and a field added later with a default is absent from old rows) and decodes
such a dict back, checking every value's type against the field's annotation. So a new
field with a default on `Subscriber`, `DeliveryRecord` or `RunReport` needs no codec change,
and rows stored before it existed decode with the default. Unknown keys are ignored (a
row written by a newer version still loads).

`keys` renames fields to short keys (the store's compact files); names not in it are
stored under the field name. Supported annotations: str, int, float, bool, bytes,
date, datetime, `X | None`, `tuple[X, ...]`, `tuple[X, Y]`, `list[X]`, `dict[str, X]`
and nested dataclasses; anything else raises TypeError when the Codec is built (a test
builds every codec, so a new field of an unsupported type fails there, not at run time).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Enc = Callable[[Any], Any]
Dec = Callable[[Any, str], Any]  # (json value, what) -> value; ValueError on a bad value
_MISSING: Any = dataclasses.MISSING


def _ident(v: Any) -> Any:
    return v


def _bad(what: str, v: Any) -> ValueError:
    text = repr(v)
    return ValueError(f"{what}: bad value {text if len(text) <= 60 else text[:57] + '...'}")


def _scalar(kind: type) -> Dec:
    def dec(v: Any, what: str) -> Any:
        if type(v) is not kind:  # bool is not an int here, nor an int a float
            if kind is float and type(v) is int:
                return float(v)
            raise _bad(what, v)
        return v

    return dec


def _dec_bytes(v: Any, what: str) -> bytes:
    if not isinstance(v, str):
        raise _bad(what, v)
    try:
        return v.encode("latin-1")  # bytes are kept as latin-1 text: lossless, compact
    except UnicodeEncodeError:
        raise _bad(what, v) from None


def _dec_date(v: Any, what: str) -> date:
    try:
        return date.fromisoformat(v)
    except (TypeError, ValueError):
        raise _bad(what, v) from None


def _dec_datetime(v: Any, what: str) -> datetime:
    try:
        return datetime.fromisoformat(v)
    except (TypeError, ValueError):
        raise _bad(what, v) from None


def converters(tp: Any, owner: str) -> tuple[Enc, Dec]:
    """(encode, decode) for one annotation; TypeError for an unsupported one."""
    if tp in (str, int, float, bool):
        return _ident, _scalar(tp)
    if tp is bytes:
        return (lambda v: v.decode("latin-1")), _dec_bytes
    if tp is datetime:  # before date: a datetime is a date
        return (lambda v: v.isoformat()), _dec_datetime
    if tp is date:
        return (lambda v: v.isoformat()), _dec_date
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        nested = Codec(tp)
        return nested.encode, nested.decode
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(args) != 2:
            raise TypeError(f"{owner}: only `X | None` unions are supported, not {tp}")
        enc1, dec1 = converters(rest[0], owner)
        return (lambda v: None if v is None else enc1(v)), (
            lambda v, what: None if v is None else dec1(v, what)
        )
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        enc1, dec1 = converters(args[0], owner)

        def dec_tuple(v: Any, what: str) -> tuple[Any, ...]:
            if not isinstance(v, list):
                raise _bad(what, v)
            return tuple(dec1(x, what) for x in v)

        return (lambda v: [enc1(x) for x in v]), dec_tuple
    if origin is tuple and args:
        pairs = [converters(a, owner) for a in args]

        def dec_fixed(v: Any, what: str) -> tuple[Any, ...]:
            if not isinstance(v, list) or len(v) != len(pairs):
                raise _bad(what, v)
            return tuple(d(x, what) for (_, d), x in zip(pairs, v, strict=True))

        return (lambda v: [e(x) for (e, _), x in zip(pairs, v, strict=True)]), dec_fixed
    if origin is list and len(args) == 1:
        enc1, dec1 = converters(args[0], owner)

        def dec_list(v: Any, what: str) -> list[Any]:
            if not isinstance(v, list):
                raise _bad(what, v)
            return [dec1(x, what) for x in v]

        return (lambda v: [enc1(x) for x in v]), dec_list
    if origin is dict and len(args) == 2 and args[0] is str:
        enc1, dec1 = converters(args[1], owner)

        def dec_dict(v: Any, what: str) -> dict[str, Any]:
            if not isinstance(v, dict):
                raise _bad(what, v)
            return {str(k): dec1(x, what) for k, x in v.items()}

        return (lambda v: {k: enc1(x) for k, x in v.items()}), dec_dict
    raise TypeError(f"{owner}: no JSON form for a field of type {tp!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    key: str
    default: Any  # _MISSING: required
    factory: Any  # a default_factory, or _MISSING
    enc: Enc
    dec: Dec
    empty: Any  # the default value, to compare with (_MISSING: required, always stored)


class Codec(Generic[T]):
    """Encode/decode instances of the dataclass `cls` (see the module docstring).

    `exclude`: fields not stored in the dict (e.g. a paper's id, the key it is filed
    under); `decode` then takes them as keyword arguments. `check(obj)` raises ValueError
    for values the types allow but the model does not (an unknown status)."""

    def __init__(
        self,
        cls: type[T],
        keys: Mapping[str, str] | None = None,
        exclude: tuple[str, ...] = (),
        check: Callable[[T], None] | None = None,
    ) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        self.cls = cls
        self.check = check
        hints = typing.get_type_hints(cls)
        keys = dict(keys or {})
        fields = []
        for f in dataclasses.fields(cls):
            if f.name in exclude:
                continue
            enc, dec = converters(hints[f.name], f"{cls.__name__}.{f.name}")
            factory: Any = f.default_factory
            empty = f.default if factory is _MISSING else factory()
            key = keys.pop(f.name, f.name)
            fields.append(_Field(f.name, key, f.default, f.default_factory, enc, dec, empty))
        if keys:
            raise TypeError(f"{cls.__name__}: keys for unknown fields {sorted(keys)}")
        if len({f.key for f in fields}) != len(fields):
            raise TypeError(f"{cls.__name__}: two fields share a key")
        self.fields = tuple(fields)

    def encode(self, obj: T) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.fields:
            v = getattr(obj, f.name)
            if f.empty is _MISSING or v != f.empty:
                out[f.key] = f.enc(v)
        return out

    def decode(self, d: Any, what: str = "", **given: Any) -> T:
        """`d` (a dict from `encode`, perhaps of an older version) -> an instance;
        ValueError naming `what` and the field on a missing or malformed value."""
        what = what or self.cls.__name__.lower()
        if not isinstance(d, dict):
            raise ValueError(f"{what}: expected an object")
        kwargs = dict(given)
        for f in self.fields:
            v = d.get(f.key, _MISSING)
            if v is _MISSING:
                if f.default is _MISSING and f.factory is _MISSING:
                    raise ValueError(f"{what}: missing {f.name!r}")
                continue
            kwargs[f.name] = f.dec(v, f"{what}: {f.name}")
        try:
            obj = self.cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{what}: {e}") from e
        if self.check is not None:
            self.check(obj)
        return obj
