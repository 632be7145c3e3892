"""Fixtures shared by several test modules."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def pg_url() -> str:
    """The PostgreSQL server CI starts (.ci/postgres.sh). Skipped without one, unless
    PRUNESEARCH_REQUIRE_PG is set (CI): then a missing server fails instead of skipping."""
    url = os.environ.get("PRUNESEARCH_PG_URL")
    if not url:
        if os.environ.get("PRUNESEARCH_REQUIRE_PG"):
            pytest.fail("PRUNESEARCH_REQUIRE_PG is set but PRUNESEARCH_PG_URL is not: start the server "
                        "with `source .ci/postgres.sh; pg_start`")
        pytest.skip("no PostgreSQL server (PRUNESEARCH_PG_URL unset); CI starts one with .ci/postgres.sh")
    return url
