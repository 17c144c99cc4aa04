"""Migration planning (pure): discovery, ordering, and refusal of edited files."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.migrations import (
    MIGRATIONS_DIR,
    AppliedMigration,
    Migration,
    MigrationError,
    discover_migrations,
    plan_migrations,
)


def _m(version: int, sql: str = "SELECT 1") -> Migration:
    return Migration(version=version, name=f"m{version}", sql=sql)


def _applied(m: Migration) -> AppliedMigration:
    return AppliedMigration(m.version, m.name, m.checksum)


class TestPlan:
    def test_nothing_applied_plans_everything(self) -> None:
        """A fresh database gets every migration, in order."""
        available = [_m(1), _m(2)]
        assert plan_migrations(available, []) == available

    def test_applied_are_skipped(self) -> None:
        """Applied migrations are not planned again."""
        available = [_m(1), _m(2), _m(3)]
        assert plan_migrations(available, [_applied(available[0])]) == available[1:]

    def test_edited_file_is_refused(self) -> None:
        """An applied file whose content changed raises, naming the file."""
        original = _m(1, "CREATE TABLE a ()")
        edited = _m(1, "CREATE TABLE a (x int)")
        with pytest.raises(MigrationError, match=r"0001_m1\.sql was edited"):
            plan_migrations([edited], [_applied(original)])

    def test_missing_file_is_refused(self) -> None:
        """An applied migration whose file disappeared raises."""
        with pytest.raises(MigrationError, match="file is missing"):
            plan_migrations([], [_applied(_m(1))])


class TestDiscover:
    def test_repository_migrations_are_well_formed(self) -> None:
        """The project's own migrations folder passes discovery."""
        assert discover_migrations(MIGRATIONS_DIR)[0].version == 1

    @pytest.mark.parametrize(
        ("names", "error"),
        [
            (["0001_a.sql", "0003_c.sql"], "without gaps"),
            (["0002_a.sql"], "without gaps"),
            (["1_a.sql"], "NNNN_lower_snake"),
            (["0001_Bad-Name.sql"], "NNNN_lower_snake"),
        ],
    )
    def test_bad_folders_are_refused(self, tmp_path: Path, names: list[str], error: str) -> None:
        """Gaps, repeats and malformed names are refused before anything runs."""
        for name in names:
            (tmp_path / name).write_text("SELECT 1;")
        with pytest.raises(MigrationError, match=error):
            discover_migrations(tmp_path)

    def test_order_is_by_version(self, tmp_path: Path) -> None:
        """Files are returned in version order with their content."""
        (tmp_path / "0002_b.sql").write_text("SELECT 2;")
        (tmp_path / "0001_a.sql").write_text("SELECT 1;")
        found = discover_migrations(tmp_path)
        assert [(m.version, m.name, m.sql) for m in found] == [
            (1, "a", "SELECT 1;"),
            (2, "b", "SELECT 2;"),
        ]
