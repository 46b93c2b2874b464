"""Masking of sensitive payload fields, and restoring them in an edited payload."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

MASK = "•••"


def is_sensitive(key: str, sensitive: Collection[str]) -> bool:
    """Whether ``key`` (or one of its ``_``/``-``-separated parts) is a sensitive name."""
    lowered = key.lower()
    if lowered in sensitive:
        return True
    parts = lowered.replace("-", "_").split("_")
    if any(part in sensitive for part in parts):
        return True
    return any("_" in name and name in lowered for name in sensitive)


def mask(value: Any, sensitive: Collection[str]) -> Any:
    """A copy of ``value`` with the values of sensitive keys (at any depth) replaced by MASK."""
    if not sensitive:
        return value
    if isinstance(value, dict):
        return {key: MASK if isinstance(key, str) and is_sensitive(key, sensitive)
                and value[key] is not None else mask(item, sensitive)
                for key, item in value.items()}
    if isinstance(value, list):
        return [mask(item, sensitive) for item in value]
    return value


def unmask(edited: Any, original: Any, sensitive: Collection[str]) -> Any:
    """``edited`` with every MASK left at a sensitive key put back to the original value.

    An operator edits a masked payload; fields they did not touch keep their real values.
    """
    if isinstance(edited, dict):
        source = original if isinstance(original, dict) else {}
        out: dict[Any, Any] = {}
        for key, item in edited.items():
            if (item == MASK and isinstance(key, str) and is_sensitive(key, sensitive)
                    and key in source):
                out[key] = source[key]
            else:
                out[key] = unmask(item, source.get(key), sensitive)
        return out
    if isinstance(edited, list):
        source_list = original if isinstance(original, list) else []
        return [unmask(item, source_list[i] if i < len(source_list) else None, sensitive)
                for i, item in enumerate(edited)]
    return edited


def contains_mask(value: Any) -> bool:
    """Whether a MASK placeholder is left anywhere in ``value``."""
    if isinstance(value, dict):
        return any(contains_mask(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_mask(item) for item in value)
    return isinstance(value, str) and value == MASK


def changes(old: Any, new: Any, sensitive: Collection[str], path: str = "") -> list[
        tuple[str, str, str]]:
    """What an edit changed: ``(path, before, after)`` per changed leaf, as short JSON text;
    values under a sensitive key show as MASK (that they changed is still shown)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[tuple[str, str, str]] = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and is_sensitive(key, sensitive):
                if old.get(key) != new.get(key):
                    out.append((where, MASK if key in old else "-", MASK if key in new else "-"))
                continue
            if key not in old:
                out.append((where, "-", _short(new[key])))
            elif key not in new:
                out.append((where, _short(old[key]), "-"))
            else:
                out += changes(old[key], new[key], sensitive, where)
        return out
    if old != new:
        return [(path or "(payload)", _short(mask(old, sensitive)), _short(mask(new, sensitive)))]
    return []


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
