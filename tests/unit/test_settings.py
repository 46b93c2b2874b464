"""StreamflowSettings: STREAMFLOW_ env vars, nested ``__``, REDIS_URL, levels, .env file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from streamflow import StreamflowSettings
from streamflow.settings import to_ms, to_seconds


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No STREAMFLOW_*/REDIS_URL from the outer environment, no .env from the repo."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("STREAMFLOW_") or name.upper() == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = StreamflowSettings()
    assert settings.prefix == "sf"
    assert settings.levels == ["high", "normal", "low"]
    assert settings.default_level == "normal"
    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert settings.worker.group == "workers"
    assert settings.queue.attempts == 3


def test_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFLOW_PREFIX", "pay")
    monkeypatch.setenv("STREAMFLOW_DEFAULT_LEVEL", "high")
    settings = StreamflowSettings()
    assert (settings.prefix, settings.default_level) == ("pay", "high")


def test_unprefixed_names_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFIX", "nope")
    assert StreamflowSettings().prefix == "sf"


def test_nested_settings_with_double_underscore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFLOW_WORKER__CONCURRENCY", "7")
    monkeypatch.setenv("STREAMFLOW_QUEUE__ATTEMPTS", "9")
    monkeypatch.setenv("STREAMFLOW_REDIS__PASSWORD", "s3cret")
    monkeypatch.setenv("STREAMFLOW_REDIS__SENTINELS", "10.0.0.1:26379, 10.0.0.2:26379")
    settings = StreamflowSettings()
    assert settings.worker.concurrency == 7
    assert settings.queue.attempts == 9
    assert isinstance(settings.redis.password, SecretStr)
    assert settings.redis.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.redis.sentinels == ["10.0.0.1:26379", "10.0.0.2:26379"]


def test_nested_values_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFLOW_WORKER__CONCURRENCY", "0")
    with pytest.raises(ValidationError, match="concurrency"):
        StreamflowSettings()


@pytest.mark.parametrize("name", ["REDIS_URL", "STREAMFLOW_REDIS_URL", "STREAMFLOW_REDIS__URL"])
def test_redis_url_from_any_of_its_names(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "redis://cache.internal:6380/2")
    assert StreamflowSettings().redis.url == "redis://cache.internal:6380/2"


def test_streamflow_redis_url_wins_over_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://generic:1/0")
    monkeypatch.setenv("STREAMFLOW_REDIS_URL", "redis://ours:2/0")
    assert StreamflowSettings().redis.url == "redis://ours:2/0"


def test_levels_from_a_comma_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFLOW_LEVELS", "critical, normal ,bulk")
    assert StreamflowSettings().levels == ["critical", "normal", "bulk"]


def test_empty_secrets_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFLOW_REDIS__PASSWORD", "")
    monkeypatch.setenv("STREAMFLOW_REDIS__USERNAME", "")
    settings = StreamflowSettings()
    assert (settings.redis.password, settings.redis.username) == (None, None)


def test_default_level_must_be_one_of_the_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFLOW_LEVELS", "a,b")
    with pytest.raises(ValueError, match="default_level 'normal' is not one of"):
        StreamflowSettings()
    monkeypatch.setenv("STREAMFLOW_DEFAULT_LEVEL", "b")
    assert StreamflowSettings().default_level == "b"


@pytest.mark.parametrize("levels", [[], ["a", "a"], ","])
def test_levels_must_be_distinct_and_non_empty(levels: object) -> None:
    with pytest.raises(ValueError, match="levels must be"):
        StreamflowSettings(levels=levels, default_level="a")  # type: ignore[arg-type]


def test_dotenv_file_in_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "STREAMFLOW_PREFIX=fromfile\n"
        "STREAMFLOW_WORKER__BLOCK_MS=750\n"
        "STREAMFLOW_LEVELS=urgent,normal\n"
        "REDIS_URL=redis://dotenv-host:6379/3\n"
    )
    settings = StreamflowSettings()
    assert settings.prefix == "fromfile"
    assert settings.worker.block_ms == 750
    assert settings.levels == ["urgent", "normal"]
    assert settings.redis.url == "redis://dotenv-host:6379/3"


def test_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("STREAMFLOW_PREFIX=fromfile\n")
    monkeypatch.setenv("STREAMFLOW_PREFIX", "fromenv")
    assert StreamflowSettings().prefix == "fromenv"


def test_from_url_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:1/0")
    monkeypatch.setenv("STREAMFLOW_WORKER__CONCURRENCY", "3")
    settings = StreamflowSettings.from_url("redis://127.0.0.1:7777/1", prefix="x")
    assert settings.redis.url == "redis://127.0.0.1:7777/1"
    assert settings.prefix == "x"
    assert settings.worker.concurrency == 3


def test_from_url_instances_are_independent() -> None:
    a = StreamflowSettings.from_url("redis://a:1/0")
    b = StreamflowSettings.from_url("redis://b:1/0")
    a.worker.concurrency = 1
    assert (a.redis.url, b.redis.url, b.worker.concurrency) == (
        "redis://a:1/0", "redis://b:1/0", 50)


def test_unit_helpers() -> None:
    from datetime import timedelta

    assert to_seconds(timedelta(minutes=2)) == 120.0
    assert to_seconds(3) == 3.0
    assert to_ms(timedelta(milliseconds=1500)) == 1500
    assert to_ms(0.0004) == 0
    assert to_ms(2.5) == 2500


def test_a_url_given_with_settings_does_not_change_the_callers_settings() -> None:
    from streamflow.settings import StreamflowSettings, resolve_settings

    shared = StreamflowSettings.from_url("redis://a:6379/0")
    resolved = resolve_settings("redis://b:6379/0", shared)
    assert resolved.redis.url == "redis://b:6379/0"
    assert shared.redis.url == "redis://a:6379/0"
    assert resolve_settings(None, shared) is shared
