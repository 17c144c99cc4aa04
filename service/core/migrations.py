"""Apply `migrations/NNNN_name.sql` files in order, once each, and refuse edited ones.

Planning (which files to apply, which applied files changed) is pure; applying
holds a Postgres advisory lock so replicas starting together cannot race, and
runs each file in its own transaction together with its ledger row.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from service.core.logs import get_logger

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_LOCK_KEY = 0x66_69_6E_64_6D_69_67  # "findmig": one key for every findash replica
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

log = get_logger(__name__)


class MigrationError(RuntimeError):
    """The migrations folder or the database's ledger is inconsistent."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file: its version, name, content and the SHA-256 of that content."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """Hex SHA-256 of the file's content."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A ledger row: what was applied, with which checksum."""

    version: int
    name: str
    checksum: str


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read every `NNNN_name.sql` in `directory`, in version order; reject bad names and gaps."""
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lower_snake.sql")
        migrations.append(
            Migration(version=int(match["version"]), name=match["name"], sql=path.read_text())
        )
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration versions must run 0001, 0002, … without gaps or repeats; "
                f"found {migration.version:04d}_{migration.name} where {expected:04d} belongs"
            )
    return migrations


def plan_migrations(available: list[Migration], applied: list[AppliedMigration]) -> list[Migration]:
    """The migrations still to apply; raise if an applied file was edited or removed."""
    by_version = {migration.version: migration for migration in available}
    for row in applied:
        current = by_version.get(row.version)
        if current is None:
            raise MigrationError(
                f"migration {row.version:04d}_{row.name} is applied but its file is missing"
            )
        if current.checksum != row.checksum:
            raise MigrationError(
                f"migration {row.version:04d}_{row.name}.sql was edited after it was applied "
                f"(checksum {row.checksum[:12]} in the database, {current.checksum[:12]} on disk); "
                "write a new migration instead"
            )
    done = {row.version for row in applied}
    return [migration for migration in available if migration.version not in done]


async def apply_migrations(
    connection: asyncpg.Connection, *, directory: Path = MIGRATIONS_DIR
) -> list[Migration]:
    """Apply pending migrations under an advisory lock; return the ones this call applied."""
    available = discover_migrations(directory)
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await connection.execute(_LEDGER_DDL)
        rows = await connection.fetch(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        )
        applied = [AppliedMigration(r["version"], r["name"], r["checksum"]) for r in rows]
        pending = plan_migrations(available, applied)
        for migration in pending:
            started = datetime.now()
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info(
                "migration applied",
                version=migration.version,
                migration=migration.name,
                seconds=round((datetime.now() - started).total_seconds(), 3),
            )
        return pending
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def migrate(database_url: str, *, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Connect to `database_url`, apply pending migrations, disconnect."""
    connection = await asyncpg.connect(database_url)
    try:
        return await apply_migrations(connection, directory=directory)
    finally:
        await connection.close()
