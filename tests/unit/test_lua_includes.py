"""Shared Lua in ``lua/includes/``: expanded into each script at load time, one level deep."""

from __future__ import annotations

import hashlib

from streamflow import scripts


def test_every_include_is_expanded_and_the_sha_is_of_the_expanded_body() -> None:
    for script in scripts.SCRIPTS.values():
        assert "@include" not in script.body, script.name
        assert script.sha == hashlib.sha1(script.body.encode()).hexdigest()


def test_the_shared_fragments_reach_the_scripts_that_include_them() -> None:
    for name in ("move_to_dead", "reclaim_stalled", "promote_due"):
        assert "local function trim_dead(" in scripts.SCRIPTS[name].body
    assert "local function job_id_of(" in scripts.SCRIPTS["reclaim_stalled"].body
    assert "local function job_id_of(" not in scripts.SCRIPTS["fetch_jobs"].body
