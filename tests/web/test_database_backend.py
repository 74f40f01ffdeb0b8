"""The web suite runs on the database it was asked for: SQLite by default, PostgreSQL in
the PostgreSQL pass (EUTIRADS_TEST_DATABASE_URL), so a green PostgreSQL pass means it."""

from __future__ import annotations

import os

import pytest


@pytest.mark.django_db
def test_the_suite_runs_on_the_database_it_was_given():
    from django.db import connection

    wanted = "postgresql" if os.environ.get("EUTIRADS_TEST_DATABASE_URL") else "sqlite"
    assert connection.vendor == wanted
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone()[0] == 1
