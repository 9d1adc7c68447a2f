"""Named registries: configurations build components by ``type`` name, so registering a new objective, map,
schedule, embedding or model makes it usable from YAML with no CLI change."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping


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
        return factory(**kwargs, **extra)


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
