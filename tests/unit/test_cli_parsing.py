"""CLI input handling without Redis: durations, and bad input as one line and exit code 2."""

from __future__ import annotations

import pytest
import typer

from streamflow.cli import main
from streamflow.cli._output import parse_duration, parse_json, table

# Port 1 on loopback: nothing listens, so a command that gets as far as Redis fails fast.
NOWHERE = ["--redis-url", "redis://127.0.0.1:1/0"]


@pytest.fixture(autouse=True)
def no_outer_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("STREAMFLOW_") or name.upper() == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("7", 7.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("1.5s", 1.5),
        (" 30s ", 30.0),
        ("10 m", 600.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "soon", "5x", "-5s", "s", "ms5", "5sec", "1e3", "inf", "nan", "5s5", "1,5s"]
)
def test_parse_duration_refuses_garbage(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="bad duration"):
        parse_duration(text)


def test_parse_json() -> None:
    assert parse_json('{"a": [1, null]}') == {"a": [1, None]}
    with pytest.raises(typer.BadParameter, match="not valid JSON"):
        parse_json("{a: 1}")


def test_table_aligns_columns() -> None:
    assert table(["a", "long"], [[1, None], ["xyz", 2]]).splitlines() == [
        "a    long", "---  ----", "1", "xyz  2"]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def assert_one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert "Traceback" not in err
    assert lines[0].startswith("streamflow: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "argv, says",
    [
        (["add", "q", "job", "--data", "{not json"], "not valid JSON"),
        (["add", "q", "job", "--delay", "soon"], "bad duration"),
        (["add", "q", "job", "--backoff", "linear:1s"], "unknown backoff kind"),
        (["add", "q", "job", "--attempts", "0"], "attempts"),
        (["add", "q", "job", "--priority", "urgent"], "unknown priority 'urgent'"),
        (["pending", "q", "--min-idle", "later"], "bad duration"),
        (["claim", "q", "--min-idle", "xyz"], "bad duration"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["dead", "resurrect", "q"], "No such command 'resurrect'"),
        (["stats"], "Missing argument"),
        (["add", "q", "job", "--colour", "red"], "No such option"),
        (["worker", "q", "--app", "no_colon_here"], "module:attr"),
        (["worker", "q", "--app", "no_such_module_xyz:router"], "cannot import"),
        (["worker", "q", "--app", "streamflow:no_such_attr"], "no attribute"),
        (["worker", "q", "--app", "streamflow:__version__"], "neither a Router nor a callable"),
        (["worker", "q", "--app", "tests.apps:router", "--log-level", "LOUD"],
         "unknown log level"),
        (["worker", "*", "--app", "tests.apps:router"], "invalid queue name '*'"),
        (["stats", "pay*"], "invalid queue name"),
        (["add", "pay:x", "job"], "invalid queue name"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main([*NOWHERE, *argv], capsys)
    assert code == 2
    assert out == ""
    assert says in assert_one_line_error(err)


def test_bad_settings_in_the_environment_are_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMFLOW_DEFAULT_LEVEL", "urgent")
    code, _, err = run_main([*NOWHERE, "stats", "q"], capsys)
    assert code == 2
    assert "bad settings" in assert_one_line_error(err)


@pytest.mark.parametrize(
    "argv",
    [
        ["stats", "q"],
        ["add", "q", "job"],
        ["pending", "q"],
        ["dead", "list", "q"],
        ["claim", "q", "--min-idle", "0s"],
        ["pause", "q"],
        ["events", "q"],
    ],
)
def test_unreachable_redis_is_one_line_and_exit_1(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main([*NOWHERE, *argv], capsys)
    assert code == 1
    assert out == ""
    line = assert_one_line_error(err)
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in line


def test_password_is_not_printed_when_redis_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_main(["--redis-url", "redis://app:hunter2@127.0.0.1:1/0", "stats", "q"],
                            capsys)
    assert code == 1
    assert "hunter2" not in err
    assert "app:***@" in assert_one_line_error(err)


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--help"], capsys)
    assert code in (0, None)
    for command in ("worker", "add", "pending", "stats", "dead", "claim", "events", "pause",
                    "resume"):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [
        [*NOWHERE, "add", "bad:queue", "job"],
        [*NOWHERE, "stats", "two words"],
        [*NOWHERE, "add", "q", "job", "--job-id", ""],
        ["--redis-url", "redis://127.0.0.1:notaport/0", "stats", "q"],
    ],
    ids=["colon-in-queue", "space-in-queue", "empty-job-id", "bad-port"],
)
def test_invalid_values_are_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(argv, capsys)
    assert code == 2
    assert_one_line_error(err)


# ------------------------------------------------ issue 18/13: one way to speak, both tools


def test_bare_command_prints_help_with_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main([], capsys)
    assert code == 0 and err == ""
    assert "Usage: streamflow" in out and "Commands:" in out
    code, out, _ = run_main(["dead"], capsys)
    assert code == 0 and "Usage: streamflow dead" in out


@pytest.mark.parametrize("argv", [["-h"], ["stats", "-h"], ["dead", "retry", "-h"]])
def test_short_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(argv, capsys)
    assert code == 0 and "Usage:" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from streamflow import __version__

    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and out.strip() == f"streamflow {__version__}"


@pytest.mark.parametrize("argv", [
    ["stats", "q", "--redis-url", "redis://127.0.0.1:1/0"],
    ["stats", "--redis-url=redis://127.0.0.1:1/0", "q"],
    ["dead", "list", "q", "--prefix", "pay", "--redis-url", "redis://127.0.0.1:1/0"],
])
def test_global_options_after_the_command(argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(argv, capsys)
    assert code == 1  # it got as far as Redis on port 1, with the URL given after the command
    assert "redis://127.0.0.1:1/0" in assert_one_line_error(err)


def test_hoisting_stops_at_double_dash() -> None:
    from streamflow.cli._app import hoist

    assert hoist(["add", "q", "j", "--prefix", "p", "--", "--redis-url", "x"],
                 ("--redis-url", "--prefix")) == [
        "--prefix", "p", "add", "q", "j", "--", "--redis-url", "x"]


@pytest.mark.parametrize("argv, says", [
    (["--redis-url", "redis://127.0.0.1:1/abc", "stats", "q"], "database must be a number"),
    (["stats", "q", "--redis-url", "http://127.0.0.1:1/0"], "scheme"),
    ([*NOWHERE, "add", "q", "job", "--delay", "99999999999999999999d"], "over the limit"),
    ([*NOWHERE, "repeat", "add", "q", "job", "--every", "99999999999999999999d"],
     "over the limit"),
])
def test_bad_url_and_absurd_durations_are_refused(argv: list[str], says: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(argv, capsys)
    assert code == 2
    assert says in assert_one_line_error(err)


def test_a_settings_error_names_the_env_var(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMFLOW_QUEUE__ATTEMPTS", "abc")
    code, _, err = run_main([*NOWHERE, "stats", "q"], capsys)
    assert code == 2
    assert "STREAMFLOW_QUEUE__ATTEMPTS='abc'" in assert_one_line_error(err)


@pytest.fixture
def app_modules(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "sf_syntax.py").write_text("def broken(:\n")
    (folder / "sf_raises.py").write_text("raise RuntimeError('no config')\n")
    (folder / "sf_exits.py").write_text("import sys\nsys.exit(7)\n")
    monkeypatch.syspath_prepend(str(folder))


@pytest.mark.parametrize("module, says", [
    ("sf_syntax", "invalid syntax"),
    ("sf_raises", "raised RuntimeError: no config"),
    ("sf_exits", "called sys.exit(7)"),
])
def test_a_bad_app_module_is_one_line(module: str, says: str, app_modules: None,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main([*NOWHERE, "worker", "q", "--app", f"{module}:router"], capsys)
    assert code == 2
    assert says in assert_one_line_error(err)


def test_a_health_port_in_use_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_main([*NOWHERE, "worker", "q", "--app", "tests.apps:router",
                                 "--health-port", str(port)], capsys)
    assert code == 2
    line = assert_one_line_error(err.strip().splitlines()[-1])
    assert f"--health-port {port}: cannot listen" in line and "Redis" not in line


def test_metrics_port_without_the_otel_extra_exits_with_the_pip_hint(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("opentelemetry.sdk")
                        else real(name, *a))
    code, _, err = run_main([*NOWHERE, "worker", "q", "--app", "tests.apps:router",
                             "--metrics-port", "0"], capsys)
    assert code == 2
    assert "pip install 'streamflow[otel]'" in assert_one_line_error(err)


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379", "redis://127.0.0.1:6379/3", "rediss://u:p@h:6380/0",
    "redis+sentinel://127.0.0.1:1,127.0.0.1:2,[::1]:3/streamflow/0",
    "redis+sentinel://u:p@127.0.0.1:1/streamflow", "unix:///tmp/redis.sock?db=2",
])
def test_good_redis_urls_pass_the_check(url: str) -> None:
    from streamflow.cli._context import check_url

    check_url(url)


@pytest.mark.parametrize("url", [
    "redis://h/abc", "redis+sentinel://h:1,h:x/streamflow/0", "redis+sentinel://h:1/m/db",
    "http://h:1/0",
])
def test_bad_redis_urls_fail_the_check(url: str) -> None:
    from streamflow.cli._context import check_url

    with pytest.raises(typer.BadParameter, match="bad Redis URL"):
        check_url(url)


def test_events_print_every_protocol_field_by_its_full_name() -> None:
    from streamflow.cli.inspect import FIELD_NAMES
    from streamflow.protocol import EVENT_FIELDS

    assert set(FIELD_NAMES) == EVENT_FIELDS - {"e"}
