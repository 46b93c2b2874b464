"""The public surface: ``streamflow.__all__`` is exactly what the package exports."""

from __future__ import annotations
import __future__

import importlib
import importlib.metadata
import inspect
import types

import pytest

import streamflow


def exported_names() -> list[str]:
    """Public names in the package namespace, minus submodules and ``__future__`` flags."""
    return sorted(
        name
        for name, value in vars(streamflow).items()
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(value, types.ModuleType | __future__._Feature)
    )


def test_all_is_sorted_and_equals_the_exported_names() -> None:
    assert streamflow.__all__ == sorted(streamflow.__all__)
    assert streamflow.__all__ == exported_names()


@pytest.mark.parametrize("name", streamflow.__all__)
def test_every_name_is_importable_and_documented(name: str) -> None:
    value = getattr(importlib.import_module("streamflow"), name)
    if name == "__version__":
        assert isinstance(value, str)
        return
    doc = inspect.getdoc(value)
    assert doc, f"{name} has no docstring"
    assert not doc.startswith(f"{name}("), f"{name} has only the dataclass default docstring"


def test_the_core_names_are_public() -> None:
    for name in ("Queue", "Worker", "Router", "Job", "JobOptions", "Priority", "Backoff",
                 "Retry", "Discard", "StreamflowSettings", "StreamflowError"):
        assert name in streamflow.__all__


def test_queue_events_is_public() -> None:
    assert "QueueEvents" in streamflow.__all__


def test_version_matches_the_installed_distribution() -> None:
    assert streamflow.__version__ == importlib.metadata.version("streamflow")


def test_handler_signals_are_exceptions_outside_the_error_tree() -> None:
    assert issubclass(streamflow.Retry, Exception)
    assert issubclass(streamflow.Discard, Exception)
    assert not issubclass(streamflow.Retry, streamflow.StreamflowError)
    assert streamflow.Discard("bad card").reason == "bad card"
    assert streamflow.Retry(delay=5).delay == 5
