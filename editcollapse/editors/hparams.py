"""Typed hyperparameters: a frozen dataclass per editing method, read from EasyEdit-style YAML files.

A method's class derives from :class:`Hparams` (``@dataclass(frozen=True, kw_only=True)``); each field
is one YAML key, with EasyEdit's name. :meth:`Hparams.from_yaml` / :meth:`Hparams.from_mapping`
reject unknown keys (suggesting the closest known one), missing required keys and values of the
wrong type, each with one line naming the file, the key, what was expected and what came;
:meth:`Hparams.validate` adds a method's own rules. Values are kept as written (an ``int`` stays an
``int`` in a ``float`` field; YAML lists become tuples), so :meth:`Hparams.to_dict` gives back the
file's content and :meth:`Hparams.hash` equals the digest of the old plain-dict hyperparameters:
stored ``hparams_hash`` values and MEND store keys do not change.

:meth:`Hparams.to_dict` holds the keys the source named plus every field that differs from its
default (``dataclasses.replace`` changes show up; a default the file left out does not).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, Union

import yaml

SOURCE_FIELD = "given_keys"  # bookkeeping, not a hyperparameter


class HparamsError(ValueError):
    """Hyperparameters that do not fit their method's class; the message names the file and the key."""


def canonical_hash(mapping: Mapping[str, Any]) -> str:
    """A short stable digest of ``mapping`` (sha256 of JSON with sorted keys, 16 hex characters)."""
    canonical = json.dumps(mapping, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hparams:
    """Base of every method's hyperparameters (see the module docstring).

    ``model_name`` and ``model_revision`` key caches (covariance, MEND networks) and enter the hash;
    :func:`~editcollapse.editors.api.load_hparams` fills ``model_name`` from the model when the file
    names none, :func:`~editcollapse.editors.api.hparams_for` fills ``model_revision`` from the
    loaded model.
    """

    method: ClassVar[str] = "?"  # the method name used in messages

    alg_name: str | None = None  # kept for EasyEdit compatibility, unused
    model_name: str | None = None
    model_revision: str | None = None
    given_keys: frozenset[str] = dataclasses.field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        hints = _field_types(type(self))
        for name, expected in hints.items():
            value = getattr(self, name)
            if not _matches(value, expected):
                raise HparamsError(
                    f"{self.method} key {name!r}: expected {_describe(expected)}, got {type(value).__name__} {value!r}"
                )
            object.__setattr__(self, name, _frozen(value))
        self.validate()

    def validate(self) -> None:
        """A method's own rules beyond the types (raise :class:`HparamsError` with one clear line)."""

    # --- reading -------------------------------------------------------------------------------

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The YAML keys this class accepts."""
        return tuple(_field_types(cls))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<mapping>") -> Self:
        """Hyperparameters from a mapping of YAML keys (``source`` names it in errors)."""
        if not isinstance(data, Mapping):
            raise HparamsError(f"{source}: expected a mapping of hyperparameters, got {type(data).__name__}")
        known = cls.keys()
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise HparamsError(
                    f"{source}: unknown {cls.method} key {key!r}{hint}; known keys: {', '.join(sorted(known))}"
                )
        fields = {field.name: field for field in dataclasses.fields(cls)}
        missing = [key for key in known if key not in data and _is_required(fields[key])]
        if missing:
            raise HparamsError(f"{source}: missing required {cls.method} key(s) {', '.join(missing)}")
        try:
            return cls(**data, given_keys=frozenset(data))
        except HparamsError as error:
            raise HparamsError(f"{source}: {error}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        """Hyperparameters from a YAML file of EasyEdit keys."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise HparamsError(f"{path}: not valid YAML ({error})") from error
        return cls.from_mapping(data if data is not None else {}, source=str(path))

    def updated(self, changes: Mapping[str, Any], *, source: str = "overrides") -> Self:
        """A copy with ``changes`` (YAML keys) applied, checked as a file would be."""
        return type(self).from_mapping({**self.to_dict(), **changes}, source=source)

    # --- writing -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The hyperparameters as plain YAML/JSON values under their EasyEdit keys (see the module docstring)."""
        record = {}
        for field in dataclasses.fields(self):
            if field.name == SOURCE_FIELD:
                continue
            value = getattr(self, field.name)
            if field.name in self.given_keys or _is_required(field) or value != _default(field):
                record[field.name] = _plain(value)
        return record

    def hash(self) -> str:
        """The short digest of :meth:`to_dict` stored as ``Delta.hparams_hash``."""
        return canonical_hash(self.to_dict())


# --- field types -------------------------------------------------------------------------------


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls) if field.name != SOURCE_FIELD}


def _is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def _matches(value: Any, expected: Any) -> bool:
    """Whether ``value`` (as YAML gives it) fits the annotation ``expected``."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any:
        return True
    if expected is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_matches(value, option) for option in args)
    if origin is Literal:
        return any(value is option or (type(value) is type(option) and value == option) for option in args)
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(item, args[0]) for item in value)
        return len(value) == len(args) and all(_matches(item, arg) for item, arg in zip(value, args, strict=True))
    if origin is dict:
        return isinstance(value, Mapping) and all(
            _matches(key, args[0]) and _matches(item, args[1]) for key, item in value.items()
        )
    raise TypeError(f"hyperparameter annotation {expected!r} is not supported")


def _describe(expected: Any) -> str:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(option) for option in args)
    if origin is Literal:
        return " or ".join(json.dumps(option) for option in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list [{', '.join(_describe(arg) for arg in args)}]"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}"
    return getattr(expected, "__name__", str(expected))


def _frozen(value: Any) -> Any:
    """YAML lists as tuples (recursively), so that frozen hyperparameters stay unchanged."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, Mapping):
        return {key: _frozen(item) for key, item in value.items()}
    return value


def _plain(value: Any) -> Any:
    """Tuples back to lists, for YAML and JSON."""
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value
