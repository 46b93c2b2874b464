"""``streamflow-razorpay``: help, and a clear error instead of a traceback on bad settings."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from consumers.razorpay.cli import app, main

runner = CliRunner()


def test_every_command_has_help() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("ingress", "worker", "send", "schema"):
        assert command in result.output
        assert runner.invoke(app, [command, "--help"]).exit_code == 0


def test_the_ingress_refuses_to_start_without_a_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAZORPAY_WEBHOOK_SECRET", raising=False)
    result = runner.invoke(app, ["ingress", "--port", "1"])
    assert result.exit_code == 2
    assert "RAZORPAY_WEBHOOK_SECRET is not set" in result.output


def test_a_bad_setting_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAZORPAY_TABLE_PREFIX", "Drop Table;")
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 2
    assert "RAZORPAY_TABLE_PREFIX" in result.output
    assert "Traceback" not in result.output


def test_an_unsupported_database_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root@127.0.0.1/ledger")
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 2
    assert "mysql" in result.output


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("streamflow-razorpay: error: ")
    return lines[0]


@pytest.fixture(autouse=True)
def no_outer_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith(("STREAMFLOW_", "RAZORPAY_")) or name.upper() in (
                "REDIS_URL", "DATABASE_URL"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]


def test_bare_command_prints_help_with_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main([], capsys)
    assert code == 0 and "Usage: streamflow-razorpay" in out
    code, out, _ = run_main(["-h"], capsys)
    assert code == 0 and "Usage: streamflow-razorpay" in out


def test_an_unreachable_database_is_one_line_exit_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:1/ledger")
    code, _, err = run_main(["schema"], capsys)
    assert code == 1
    line = one_line(err)
    assert "cannot open the ledger database" in line and "hunter2" not in line


def test_a_route_to_an_unknown_level_is_one_line_exit_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAZORPAY_WEBHOOK_SECRET", "s")
    monkeypatch.setenv("RAZORPAY_PRIORITY_ROUTES", '{"payment.*": "urgent"}')
    code, _, err = run_main(["ingress", "--port", "1"], capsys)
    assert code == 2
    assert "unknown levels ['urgent']" in one_line(err)


@pytest.mark.parametrize("argv", [
    ["--redis-url", "redis://127.0.0.1:1/abc", "worker"],
    ["worker", "--redis-url", "redis://127.0.0.1:1/abc"],
])
def test_redis_url_before_or_after_the_command(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(argv, capsys)
    assert code == 2
    assert "database must be a number" in one_line(err)


def test_an_unknown_command_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["frobnicate"], capsys)
    assert code == 2
    assert "No such command" in one_line(err)
