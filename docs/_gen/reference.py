"""Generates the CLI and settings reference pages at build time (mkdocs-gen-files).

Both come from the code itself: the CLI page from the typer app's ``--help`` of every command,
the settings page from the pydantic models (every ``STREAMFLOW_*`` variable, its type and
default), so neither can go stale.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
import types
import typing
from collections.abc import Iterator
from typing import Any

import mkdocs_gen_files
import typer.main
from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings

from streamflow.cli import app
from streamflow.settings import StreamflowSettings

WIDTH = 100

CLI_INTRO = """# CLI reference

Generated from the `streamflow` command itself (`streamflow COMMAND --help` prints the same).
Global options (`--redis-url`, `--prefix`) come before the command:
`streamflow --redis-url redis://h:6379/0 stats payments`. Every command has `--help`; read
commands take `--json`. Bad input is one line on stderr and exit code 2; an unreachable Redis is
one line and exit code 1. `python -m streamflow` runs the same program. Shell completion:
see [Shell completion](completion.md).
"""

SETTINGS_INTRO = """# Settings reference

Generated from `StreamflowSettings` (pydantic-settings). Every setting is read from its
environment variable or a `.env` file in the working directory; nested settings use `__`
(`STREAMFLOW_WORKER__CONCURRENCY=20`). In code, pass one object explicitly:
`Queue("payments", settings=settings)`, `Worker(..., settings=settings)`, or build it with
`StreamflowSettings.from_url("redis://h:6379/0")`. Durations are seconds unless the name ends
in `_ms`. Lists (`STREAMFLOW_LEVELS`, `STREAMFLOW_REDIS__SENTINELS`) are comma-separated.
"""

# What a field means when its model gives no docstring of its own (the model's docstring wins:
# a field documented in streamflow/settings.py needs no line here). Types and defaults always
# come from the models.
MEANINGS = {
    "prefix": "Key prefix of every Redis key (`sf:{queue}:...`).",
    "levels": "Priority levels, highest first; a worker reads them in this order.",
    "default_level": "Level of a job added without a priority.",
    "redis.url": "`redis://`, `rediss://` (TLS), or `redis+sentinel://[user:pass@]h1:26379,"
                 "h2:26379/<master>/<db>` (`rediss+sentinel://` for TLS).",
    "redis.password": "ACL password (or in the URL).",
    "redis.username": "ACL user (or in the URL).",
    "redis.master_name": "Sentinel service name of the master.",
    "redis.sentinel_password": "Password of the sentinels themselves.",
    "redis.sentinel_username": "ACL user of the sentinels themselves.",
    "redis.cluster": "Talk to a Redis Cluster (every key of a queue shares one hash tag).",
    "redis.tls_ca_file": "CA bundle that verifies the server (`rediss://`).",
    "redis.tls_cert_file": "Client certificate, for servers that ask for one.",
    "redis.tls_key_file": "Key of the client certificate.",
    "redis.socket_timeout": "Seconds a command may wait for its answer.",
    "redis.connect_timeout": "Seconds a connection may take to open.",
    "redis.retry_attempts": "Retries of a command that failed on a connection error.",
    "redis.retry_backoff_base": "First retry delay, seconds (exponential, with jitter).",
    "redis.retry_backoff_cap": "Longest retry delay, seconds.",
    "redis.health_check_interval": "Seconds a pooled connection may idle before a PING checks it.",
    "redis.lua": "How the Lua moves are called: `fcall` (the functions library, Redis >= 7), "
                 "`evalsha` (scripts: Redis 6.2, or an ACL that grants EVALSHA), `auto`: FCALL "
                 "where the server and the user allow it.",
    "queue.attempts": "Runs of a job before it is dead-lettered.",
    "queue.backoff": "Delay between attempts: fixed, exponential, or exponential with jitter.",
    "queue.backoff_delay": "Base delay between attempts, seconds.",
    "queue.backoff_max": "Longest delay between attempts, seconds.",
    "queue.dedup_ttl": "Seconds a caller-given job id refuses duplicates and keeps its status.",
    "queue.max_payload_bytes": "Largest encoded payload; a larger add is refused before writing.",
    "queue.events": "Which lifecycle events go to the events stream.",
    "queue.events_maxlen": "Approximate length cap of the events stream.",
    "queue.durability": "`replicated`: an add waits (`WAIT`) for a replica and fails loudly "
                        "when none confirms.",
    "queue.replicated_timeout": "Seconds an add waits for that replica.",
    "worker.group": "Consumer group; several groups on one queue each get every job (fan-out).",
    "worker.concurrency": "Jobs a worker process runs at once.",
    "worker.stalled_interval": "Seconds a pending entry may idle before another worker "
                               "reclaims it; also how often the reclaimer runs.",
    "worker.max_stalled_count": "Reclaims before an entry is dead-lettered as `stalled`.",
    "worker.block_ms": "Milliseconds an idle worker waits for new entries per read.",
    "worker.batch_size": "Most entries one read fetches.",
    "worker.shutdown_grace": "Seconds in-flight jobs get to finish after SIGTERM.",
    "worker.promote_interval": "Seconds between moves of due delayed jobs to their level.",
    "worker.heartbeat_interval": "Seconds between a worker's heartbeats.",
    "worker.janitor_interval": "Seconds between retention passes (trimming acknowledged "
                               "entries, removing gone consumers).",
}

# ------------------------------------------------------------------------------------- CLI


def _commands(command: Any, ctx: Any, path: list[str]) -> Iterator[tuple[list[str], str]]:
    yield path, command.get_help(ctx)
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            sub_ctx = sub.context_class(sub, info_name=name, parent=ctx,
                                        max_content_width=WIDTH, terminal_width=WIDTH)
            yield from _commands(sub, sub_ctx, [*path, name])


def cli_page() -> str:
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="streamflow", max_content_width=WIDTH,
                             terminal_width=WIDTH)
    parts = [CLI_INTRO]
    for path, help_text in _commands(root, ctx, ["streamflow"]):
        level = "#" * min(len(path) + 1, 4)
        parts.append(f"{level} `{' '.join(path)}`\n\n```text\n{help_text.rstrip()}\n```\n")
    return "\n".join(parts)


# -------------------------------------------------------------------------------- settings


def _attribute_docs(model: type) -> dict[str, str]:
    """``field: type = ...`` followed by a string literal: the field's documentation."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(model)))
    body = tree.body[0].body  # type: ignore[attr-defined]  # a ClassDef
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{arg}`" for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if origin is list:
        return f"list of {_type_name(args[0])} (comma-separated)"
    if annotation is type(None):
        return "unset"
    if annotation is SecretStr:
        return "secret string"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, list):
        return f"`{','.join(map(str, value))}`" if value else "none"
    return f"`{value}`"


def _rows(model: type[BaseModel], prefix: str, section: str) -> Iterator[str]:
    docs = _attribute_docs(model)
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            continue  # a nested section: its own table
        variable = f"`{prefix}{name.upper()}`"
        alias = field.validation_alias
        if alias is not None and hasattr(alias, "choices"):
            variable = " or ".join(f"`{choice}`" for choice in alias.choices)
        description = (docs.get(name) or field.description
                       or MEANINGS.get(f"{section}{name}", "")).replace("``", "`")
        if not description:
            raise ValueError(f"setting {section}{name} has no documentation: give it a "
                             "docstring in streamflow/settings.py")
        yield f"| {variable} | {_type_name(annotation)} | {_default(field)} | {description} |"


def _section(title: str, model: type[BaseModel], prefix: str, section: str = "",
             head: str = "") -> str:
    doc = inspect.getdoc(model) or ""
    head = head or (doc.splitlines()[0] if doc else "")
    rows = "\n".join(_rows(model, prefix, section))
    return (f"## {title}\n\n{head}\n\n| variable | type | default | meaning |\n"
            f"|---|---|---|---|\n{rows}\n")


def settings_page() -> str:
    prefix = str(StreamflowSettings.model_config.get("env_prefix", ""))
    delimiter = str(StreamflowSettings.model_config.get("env_nested_delimiter", "__"))
    parts = [SETTINGS_INTRO, _section("General", StreamflowSettings, prefix,
                                      head="Redis URL shortcut, key prefix, priority levels.")]
    for name, field in StreamflowSettings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel) and not issubclass(
                model, BaseSettings):
            parts.append(_section(f"`{name}`", model, f"{prefix}{name.upper()}{delimiter}",
                                  f"{name}."))
    return "\n".join(parts)


with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(cli_page())
with mkdocs_gen_files.open("reference/settings.md", "w") as page:
    page.write(settings_page())
