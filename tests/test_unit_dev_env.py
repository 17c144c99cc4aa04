"""`.dev/env`: what `just dev` writes, the CLI and the supervisor read back unchanged."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from service.core.dev_env import read_env_file, write_env_file


class TestDevEnv:
    def test_missing_file_is_empty(self, tmp_path: Path) -> None:
        """A missing file reads as no variables rather than an error."""
        assert read_env_file(tmp_path / "absent") == {}

    @pytest.mark.parametrize(
        "value",
        [
            "postgresql://findash:pw@127.0.0.1:5432/findash?sslmode=disable",
            "redis://:p#ss@127.0.0.1:6379/0",
            "fdk_AbC-123_xyz",
            "${HOME}/not-expanded",
            "500/second",
            "",
        ],
    )
    def test_round_trip(self, tmp_path: Path, value: str) -> None:
        """A value written is read back verbatim: no expansion, `=` and `#` kept."""
        path = tmp_path / ".dev" / "env"
        write_env_file(path, {"KEY": value, "OTHER": "1"})
        assert read_env_file(path) == {"KEY": value, "OTHER": "1"}

    def test_written_for_the_owner_only(self, tmp_path: Path) -> None:
        """The file holds an API key, so only its owner may read it."""
        path = tmp_path / "env"
        write_env_file(path, {"FINDASH_API_KEY": "fdk_x"})
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_reads_hand_edits(self, tmp_path: Path) -> None:
        """Comments, blank lines, `export`, quotes and spaces round `=` are understood."""
        path = tmp_path / "env"
        path.write_text(
            "# comment\n\nexport A=1\nB = two\nC='three words'\nD=\"4\"  # trailing\nE\n"
        )
        assert read_env_file(path) == {"A": "1", "B": "two", "C": "three words", "D": "4"}
