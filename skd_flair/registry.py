"""Named registries: configurations build components by ``type`` name, so registering a new objective, map,
schedule, embedding or model makes it usable from YAML with no CLI change."""
from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, Callable, Dict, Mapping, Optional

from pydantic import ConfigDict, TypeAdapter, ValidationError


class ConfigError(ValueError):
    """A configuration that cannot be built: unknown type or key, missing file, wrong value."""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable[..., Any]] = {}

    def register(self, name: str):
        def add(obj):
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            return obj

        return add

    def names(self):
        return sorted(self._items)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} type '{name}'; known: {', '.join(self.names())}")
        return self._items[name]

    def build(self, config: Mapping[str, Any], where: str = "", **extra) -> Any:
        """Build from ``{"type": name, **kwargs}``; unknown keys are errors that name the key and `where`."""
        where = where or self.kind
        if isinstance(config, str):
            config = {"type": config}
        if not isinstance(config, Mapping) or "type" not in config:
            raise ConfigError(f"{where}: expected a mapping with a 'type' key, got {config!r}")
        factory = self.get(config["type"])
        kwargs = {k: v for k, v in config.items() if k != "type"}
        check_keys(factory, kwargs, f"{where} (type '{config['type']}')", extra)
        return factory(**kwargs, **_accepted(factory, extra))


def _accepted(factory: Callable[..., Any], context: Mapping[str, Any]) -> Dict[str, Any]:
    """The context values (the corpus, the teacher) that `factory` declares: a factory that needs none of them
    does not have to take them."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(context)
    return {k: v for k, v in context.items() if k in params}


def with_keys(shared: Callable[..., Any]):
    """Decorator: the factory also takes `shared`'s parameters (appended to its signature and type hints, and
    received in its ``**kwargs`` with their defaults filled in), so keys that several factories accept are
    declared once and still checked, documented and validated like the factory's own."""
    extra = [p for p in inspect.signature(shared).parameters.values()]
    defaults = {p.name: p.default for p in extra if p.default is not inspect.Parameter.empty}

    def wrap(fn):
        own = [p for p in inspect.signature(fn).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]

        @functools.wraps(fn)
        def factory(*args, **kwargs):
            return fn(*args, **{**defaults, **kwargs})

        factory.__signature__ = inspect.signature(fn).replace(parameters=own + extra)
        factory.__annotations__ = {**_hints(fn), **{k: v for k, v in _hints(shared).items() if k != "return"}}
        return factory

    return wrap


def check_keys(factory: Callable[..., Any], kwargs: Mapping[str, Any], where: str, extra=()) -> None:
    """Raise ConfigError naming every key that `factory` does not accept, or requires and did not get."""
    params = inspect.signature(factory).parameters
    named = {n: p for n, p in params.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    missing = [n for n, p in named.items() if p.default is inspect.Parameter.empty and n not in kwargs
               and n not in extra and n != "self"]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(named) - set(extra))
    if unknown:
        allowed = ", ".join(sorted(set(named) - set(extra)))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
    check_values(factory, kwargs, where)


# Values are checked against the factories' own annotations (with annotated_types constraints for ranges), in
# pydantic's strict mode: a YAML string "yes" or "false" is not a boolean, "fast" is not a learning rate.
_STRICT = ConfigDict(strict=True, arbitrary_types_allowed=True)


def _hints(factory: Callable[..., Any]) -> Dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001  (a name only imported for type checking): resolve one by one
        out = {}
        for name, param in inspect.signature(target).parameters.items():
            ann = param.annotation
            if isinstance(ann, str):
                try:
                    ann = eval(ann, getattr(target, "__globals__", {}))  # noqa: S307  (our own annotations)
                except Exception:  # noqa: BLE001
                    continue
            if ann is not inspect.Parameter.empty:
                out[name] = ann
        return out


@functools.lru_cache(maxsize=None)
def _adapter(hint) -> Optional[TypeAdapter]:
    try:
        return TypeAdapter(hint, config=_STRICT)
    except Exception:  # noqa: BLE001  (a type pydantic cannot check: left to the factory)
        return None


def check_value(hint, value, key: str, where: str) -> None:
    adapter = _adapter(hint)
    if adapter is None:
        return
    try:
        adapter.validate_python(value)
    except ValidationError as error:
        first = error.errors()[0]  # its location inside a union names pydantic's branches: the key says enough
        raise ConfigError(f"{where}: {key}: {first['msg'].lower()}, got {value!r}") from None


def check_values(factory: Callable[..., Any], kwargs: Mapping[str, Any], where: str) -> None:
    """ConfigError naming the first key whose value does not fit the factory's annotation."""
    hints = _hints(factory)
    for key, value in kwargs.items():
        if key in hints and key != "return":
            check_value(hints[key], value, key, where)
