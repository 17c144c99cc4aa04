"""`.dev/env`: the KEY=VALUE file `just dev` writes and the CLI and `just` recipes read.

It lets a second terminal reach the stack the first one started. One reader and one writer
keep the two sides agreeing on the format (python-dotenv's, which is also what `just` reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

DEV_ENV_FILE = Path(__file__).resolve().parents[2] / ".dev" / "env"


def read_env_file(path: Path = DEV_ENV_FILE) -> dict[str, str]:
    """The variables `path` sets, taken literally (no `${VAR}` expansion); missing file → {}."""
    if not path.exists():
        return {}
    values = dotenv_values(path, interpolate=False)
    return {key: value for key, value in values.items() if value is not None}


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Write `values` as KEY=VALUE lines, readable by just, honcho and the CLI (owner only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{key}={value}\n" for key, value in values.items())
    path.write_text("# written by `just dev`; recipes and the CLI read it\n" + body)
    path.chmod(0o600)
