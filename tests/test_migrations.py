"""The migration runner against a real Postgres: idempotent, serialised, strict."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from service.core.migrations import MigrationError, migrate
from service.dev.embedded import EmbeddedPostgres


@pytest.fixture
async def scratch_database(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    """A fresh, empty database for one test."""
    name = f"mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres.url.rsplit("/", 1)[0] + f"/{name}"
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


class TestMigrationRunner:
    async def test_applies_once(self, scratch_database: str, tmp_path: Path) -> None:
        """A second run applies nothing and leaves one ledger row per file."""
        folder = _write(
            tmp_path / "m",
            {
                "0001_a.sql": "CREATE TABLE a (id int);",
                "0002_b.sql": "CREATE TABLE b (id int);",
            },
        )
        first = await migrate(scratch_database, directory=folder)
        second = await migrate(scratch_database, directory=folder)
        assert [m.version for m in first] == [1, 2]
        assert second == []
        conn = await asyncpg.connect(scratch_database)
        try:
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        finally:
            await conn.close()
        assert [r["version"] for r in rows] == [1, 2]

    async def test_concurrent_runners_are_serialised(
        self, scratch_database: str, tmp_path: Path
    ) -> None:
        """Five runners started together apply each file exactly once between them."""
        folder = _write(
            tmp_path / "m",
            {
                "0001_a.sql": "CREATE TABLE a (id int); SELECT pg_sleep(0.3);",
                "0002_b.sql": "CREATE TABLE b (id int);",
            },
        )
        results = await asyncio.gather(
            *(migrate(scratch_database, directory=folder) for _ in range(5))
        )
        applied = sorted(m.version for result in results for m in result)
        assert applied == [1, 2]

    async def test_edited_applied_file_is_refused(
        self, scratch_database: str, tmp_path: Path
    ) -> None:
        """Changing an applied file makes the next run fail loudly and apply nothing."""
        folder = _write(tmp_path / "m", {"0001_a.sql": "CREATE TABLE a (id int);"})
        await migrate(scratch_database, directory=folder)
        _write(
            folder,
            {"0001_a.sql": "CREATE TABLE a (id bigint);", "0002_b.sql": "CREATE TABLE b (id int);"},
        )
        with pytest.raises(MigrationError, match="edited"):
            await migrate(scratch_database, directory=folder)
        conn = await asyncpg.connect(scratch_database)
        try:
            assert await conn.fetchval("SELECT to_regclass('b')") is None
        finally:
            await conn.close()

    async def test_failed_file_rolls_back(self, scratch_database: str, tmp_path: Path) -> None:
        """A failing file leaves neither its changes nor a ledger row."""
        folder = _write(
            tmp_path / "m",
            {
                "0001_a.sql": "CREATE TABLE a (id int); SELECT no_such_function();",
            },
        )
        with pytest.raises(asyncpg.PostgresError):
            await migrate(scratch_database, directory=folder)
        conn = await asyncpg.connect(scratch_database)
        try:
            assert await conn.fetchval("SELECT to_regclass('a')") is None
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 0
        finally:
            await conn.close()
