"""The extra_data codec: Python values to tagged JSON for a ``jsonb`` column, and back.

Plain JSON values (None, bool, int, str, lists, dicts with str keys) are stored as
themselves, so the column stays readable and queryable from SQL. Every other
supported type is stored as an object whose ``"$type"`` member names it::

    {"$type": "tuple", "items": [1, 2]}
    {"$type": "datetime", "iso": "2026-11-28T15:40:58+00:00"}

A dict is stored as a plain object only when all its keys are str and none is
``"$type"``; otherwise as ``{"$type": "dict", "items": [[key, value], ...]}``,
so decoding is never ambiguous.

Unpickling data read from a database lets anyone who can write that database run
code in the application, so pickle is used only when a UserSpace is opened with
``serializer="pickle"``; it then stores, pickled, just the values that tagged JSON
cannot hold.
"""

import base64
import binascii
import datetime as dt
import json
import math
import pickle
import uuid
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, Literal

from pgusers._errors import BadCallError, StoredDataError

Serializer = Literal["json", "pickle"]
JSON = Any  # what json.dumps accepts and json.loads returns

TAG: Final = "$type"
MAX_DEPTH: Final = 100
MAX_ENCODED: Final = 1 << 20
"""The most bytes of UTF-8 JSON one extra_data may take."""

UNDECODABLE: Final = (
    ArithmeticError,  # decimal.InvalidOperation, for a decimal's text no Decimal can hold
    KeyError,
    TypeError,
    ValueError,
    OverflowError,
    IndexError,
    AttributeError,
    binascii.Error,
    zoneinfo.ZoneInfoNotFoundError,
    pickle.UnpicklingError,
    EOFError,
    ImportError,
    RecursionError,
)
"""What decoding raises for data this codec did not write (or that was damaged)."""


def _tagged(name: str, **members: JSON) -> dict[str, JSON]:
    return {TAG: name, **members}


def _moment(name: str, value: dt.datetime | dt.time) -> dict[str, JSON]:
    # A ZoneInfo zone is stored by name: an ISO offset alone would come back as a fixed
    # offset, and a time has no offset at all without a date.
    if isinstance(value.tzinfo, zoneinfo.ZoneInfo):
        local = value.replace(tzinfo=None).isoformat()
        return _tagged(name, iso=local, zone=value.tzinfo.key, fold=value.fold)
    return _tagged(name, iso=value.isoformat())


def _from_moment(kind: type[dt.datetime] | type[dt.time], data: dict[str, JSON]) -> Any:
    value = kind.fromisoformat(data["iso"])
    if "zone" in data:
        value = value.replace(tzinfo=zoneinfo.ZoneInfo(data["zone"]), fold=data["fold"])
    return value


def _float_is_plain(value: float) -> bool:
    # jsonb keeps a number's decimal digits, but prints exponents and -0.0 in a way
    # json.loads reads back as int or 0.0; such floats are tagged to come back exact.
    text = repr(value)
    return math.isfinite(value) and "e" not in text and text != "-0.0"


class Codec:
    """Encodes extra_data values to JSON-compatible data and decodes them back."""

    def __init__(self, serializer: Serializer = "json") -> None:
        if serializer not in ("json", "pickle"):
            raise BadCallError(f"serializer must be 'json' or 'pickle', not {serializer!r}")
        self.serializer: Serializer = serializer
        self._encoders: dict[type, Callable[[Any, int], JSON]] = {
            tuple: lambda v, d: _tagged("tuple", items=self._sequence(v, d)),
            list: self._sequence,
            set: lambda v, d: _tagged("set", items=self._sequence(v, d)),
            frozenset: lambda v, d: _tagged("frozenset", items=self._sequence(v, d)),
            dict: self._dict,
            bytes: lambda v, d: _tagged("bytes", base64=base64.b64encode(v).decode()),
            float: lambda v, d: v if _float_is_plain(v) else _tagged("float", repr=repr(v)),
            dt.datetime: lambda v, d: _moment("datetime", v),
            dt.date: lambda v, d: _tagged("date", iso=v.isoformat()),
            dt.time: lambda v, d: _moment("time", v),
            dt.timedelta: lambda v, d: _tagged(
                "timedelta", days=v.days, seconds=v.seconds, microseconds=v.microseconds
            ),
            Decimal: lambda v, d: _tagged("decimal", text=str(v)),
            uuid.UUID: lambda v, d: _tagged("uuid", hex=v.hex),
        }
        self._decoders: dict[str, Callable[[dict[str, JSON]], Any]] = {
            "bytes": lambda d: base64.b64decode(d["base64"], validate=True),
            "float": lambda d: float(d["repr"]),
            "datetime": lambda d: _from_moment(dt.datetime, d),
            "date": lambda d: dt.date.fromisoformat(d["iso"]),
            "time": lambda d: _from_moment(dt.time, d),
            "timedelta": lambda d: dt.timedelta(d["days"], d["seconds"], d["microseconds"]),
            "decimal": lambda d: Decimal(d["text"]),
            "uuid": lambda d: uuid.UUID(hex=d["hex"]),
            "pickle": self._unpickle,
        }

    # -- encoding --------------------------------------------------------------

    def dumps(self, value: object) -> str | None:
        """Return ``value`` as JSON text for a jsonb column (None stays SQL NULL)."""
        if value is None:
            return None
        encoded = self._encode(value, 0)
        try:
            text = json.dumps(encoded, ensure_ascii=False, separators=(",", ":"))
        except ValueError:
            raise BadCallError(
                "extra_data holds an int too long to store (more than 4300 digits)"
            ) from None
        size = len(text.encode())
        if size > MAX_ENCODED:
            raise BadCallError(f"extra_data takes {size} bytes as JSON; the limit is {MAX_ENCODED}")
        return text

    def encode(self, value: object) -> JSON:
        """Return the JSON-compatible form of ``value`` or raise :class:`BadCallError`."""
        return self._encode(value, 0)

    def _encode(self, value: Any, depth: int) -> JSON:
        if depth > MAX_DEPTH:
            raise BadCallError(f"extra_data is nested more than {MAX_DEPTH} levels deep")
        kind = type(value)
        if value is None or kind is bool or kind is int:
            return value
        if kind is str:
            return self._text(value)
        encoder = self._encoders.get(kind)
        if encoder is not None:
            return encoder(value, depth + 1)
        if self.serializer == "pickle":
            return self._pickle(value)
        raise BadCallError(
            f"extra_data cannot hold a {kind.__module__}.{kind.__qualname__} with the "
            "default JSON serializer; open the UserSpace with serializer='pickle' to "
            "store arbitrary picklable objects"
        )

    def _text(self, value: str) -> str:
        if "\x00" in value:
            raise BadCallError("extra_data strings must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadCallError("extra_data holds a string with a lone surrogate") from None
        return value

    def _sequence(self, values: Any, depth: int) -> list[JSON]:
        return [self._encode(item, depth) for item in values]

    def _dict(self, value: dict[Any, Any], depth: int) -> JSON:
        if all(type(key) is str for key in value) and TAG not in value:
            return {self._text(key): self._encode(item, depth) for key, item in value.items()}
        return _tagged(
            "dict",
            items=[
                [self._encode(key, depth), self._encode(item, depth)] for key, item in value.items()
            ],
        )

    def _pickle(self, value: object) -> JSON:
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise BadCallError(f"extra_data cannot be pickled: {error}") from None
        return _tagged("pickle", base64=base64.b64encode(data).decode())

    # -- decoding --------------------------------------------------------------

    def decode(self, data: JSON) -> Any:
        """Return the Python value that :meth:`encode` turned into ``data``.

        Raises :class:`StoredDataError` for data this codec could not have written.
        """
        try:
            return self._decode(data)
        except BadCallError:  # pickled data, in a userspace that did not opt into pickle
            raise
        except UNDECODABLE as error:
            raise StoredDataError(
                f"stored extra_data cannot be decoded ({type(error).__name__}: {error}); "
                "it was written by other software or damaged"
            ) from error

    def _decode(self, data: JSON) -> Any:
        if isinstance(data, list):
            return [self._decode(item) for item in data]
        if not isinstance(data, dict):
            return data
        if TAG not in data:
            return {key: self._decode(item) for key, item in data.items()}
        return self._decode_tagged(data)

    def _decode_tagged(self, data: dict[str, JSON]) -> Any:
        name = data[TAG]
        if name in ("tuple", "set", "frozenset"):
            items = [self._decode(item) for item in data["items"]]
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[name](items)
        if name == "dict":
            return {self._decode(key): self._decode(item) for key, item in data["items"]}
        decoder = self._decoders.get(name)
        if decoder is None:
            raise ValueError(f"unknown {TAG} tag {name!r}")
        return decoder(data)

    def _unpickle(self, data: dict[str, JSON]) -> Any:
        if self.serializer != "pickle":
            raise BadCallError(
                "this extra_data was stored with serializer='pickle'; open the UserSpace "
                "with serializer='pickle' to read it"
            )
        return pickle.loads(base64.b64decode(data["base64"], validate=True))  # noqa: S301 - opted into
