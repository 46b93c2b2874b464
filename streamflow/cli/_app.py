"""What both command-line tools share (``streamflow`` and ``streamflow-razorpay``): one help
style (plain text, ``-h``/``--help``), global options accepted before or after the command, a
bare command printing its help with exit code 0, and one error policy.

Error policy: bad input is one line ``<prog>: error: ...`` on stderr and exit code 2; a server
that cannot be reached, exit code 1; Ctrl-C, 130; a closed stdout (``... | head``), quiet.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
_USAGE_ERROR: type[Exception] = typer.BadParameter.__mro__[1]  # click's UsageError (unexported)


class StdoutClosed(Exception):
    """The reader of stdout went away (``streamflow events q | head``)."""


class Group(TyperGroup):
    """A command group: bare, it prints its help and exits 0; its global options (those of
    ``hoisted``, each taking one value) may also come after the subcommand."""

    hoisted: tuple[str, ...] = ()

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            typer.echo(ctx.get_help())
            ctx.exit(0)
        return super().parse_args(ctx, hoist(args, self.hoisted))


class RootGroup(Group):
    """The root of ``streamflow``: ``--redis-url`` and ``--prefix`` go anywhere."""

    hoisted = ("--redis-url", "--prefix")


class RazorpayRootGroup(Group):
    """The root of ``streamflow-razorpay``: ``--redis-url`` goes anywhere."""

    hoisted = ("--redis-url",)


def hoist(args: Sequence[str], names: Sequence[str]) -> list[str]:
    """``args`` with the options ``names`` (and their values) moved to the front, so that a
    root option works after the subcommand too (``stats q --redis-url URL``). Stops at ``--``."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        name = arg.partition("=")[0]
        if name in names:
            if "=" in arg:
                front.append(arg)
            else:
                front += list(args[i:i + 2])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def new_app(name: str, help_text: str, cls: type[TyperGroup] = Group) -> typer.Typer:
    """A Typer app with the shared help style."""
    return typer.Typer(name=name, help=help_text, cls=cls, add_completion=True,
                       pretty_exceptions_enable=False, rich_markup_mode=None,
                       context_settings=HELP_OPTIONS)


def sub_app(help_text: str) -> typer.Typer:
    """A command group under a root app (``streamflow dead``, ``streamflow repeat``)."""
    return typer.Typer(help=help_text, cls=Group, rich_markup_mode=None,
                       context_settings=HELP_OPTIONS)


PROG: ContextVar[str] = ContextVar("PROG", default="streamflow")
"""The name of the running tool, for error lines (set by each tool's root callback)."""


def prog_name() -> str:
    """The name of the running tool."""
    return PROG.get()


def quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail loudly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run_main(app: typer.Typer, prog: str, argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``app`` under the shared error policy and exit."""
    try:
        result = app(args=list(argv) if argv is not None else None, prog_name=prog,
                     standalone_mode=False)
    except (StdoutClosed, BrokenPipeError):
        quiet_stdout()
        sys.exit(0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo(f"{prog}: aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:
        typer.echo(f"{prog}: error: {_one_line(exc)}", err=True)
        sys.exit(2)
    sys.exit(result if isinstance(result, int) else 0)


def _one_line(exc: Exception) -> str:
    """A usage error as one line, with a hint where it helps."""
    format_message = getattr(exc, "format_message", None)
    message = " ".join((format_message() if format_message else str(exc)).split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and isinstance(exc, _USAGE_ERROR):
        message += f" (see {ctx.command_path} --help)"
    return message


def echo_safe(text: Any = "", err: bool = False) -> None:
    """``typer.echo`` that turns a closed stdout into ``StdoutClosed``."""
    try:
        typer.echo(text, err=err)
    except BrokenPipeError:
        raise StdoutClosed from None
