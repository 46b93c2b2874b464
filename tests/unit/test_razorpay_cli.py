"""``streamflow-razorpay``: help, and a clear error instead of a traceback on bad settings."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from consumers.razorpay.cli import app

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
    assert "table_prefix" in result.output
    assert "Traceback" not in result.output


def test_an_unsupported_database_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root@127.0.0.1/ledger")
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 2
    assert "mysql" in result.output
