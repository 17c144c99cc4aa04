"""Every findash Redis key is named in service/core/redis_keys.py and nowhere else."""

from __future__ import annotations

import ast
import itertools

import pytest

from service.core import redis_keys
from tests.conftest import ROOT

KEYS_MODULE = ROOT / "service" / "core" / "redis_keys.py"


def _docstrings(tree: ast.Module) -> set[int]:
    """The ids of the nodes that are module, class or function docstrings."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def key_literals(source: str) -> list[tuple[int, str]]:
    """The (line, text) of `source`'s string literals naming a findash key: f-string parts
    included, docstrings not."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith(redis_keys.PREFIX)
        and id(node) not in skip
    ]


class TestKeysLiveInOneModule:
    def test_no_other_module_spells_a_key(self) -> None:
        """No module under service/ or workers/ but redis_keys.py has a "findash:…" literal."""
        sources = itertools.chain(ROOT.glob("service/**/*.py"), ROOT.glob("workers/**/*.py"))
        offenders = [
            f"{path.relative_to(ROOT)}:{line}: {text!r}"
            for path in sources
            if path != KEYS_MODULE
            for line, text in key_literals(path.read_text())
        ]
        assert offenders == []

    def test_the_scan_sees_an_fstring_key(self) -> None:
        """The scan catches a key prefix written inside an f-string, and skips docstrings."""
        source = '"""findash: a docstring."""\nKEY = f"findash:x:{1}"\n'
        assert key_literals(source) == [(2, "findash:x:")]


class TestBuilders:
    def test_families_do_not_overlap(self) -> None:
        """No key family's prefix begins another's, so a SCAN of one never returns the other."""
        for a, b in itertools.permutations(redis_keys.FAMILIES, 2):
            assert not b.startswith(a), (a, b)

    @pytest.mark.parametrize(
        ("key", "family"),
        [
            (redis_keys.worker_heartbeat_key("w1@host"), redis_keys.WORKER_HEARTBEAT),
            (redis_keys.cancel_key("t-1"), redis_keys.CANCEL),
            (redis_keys.provider_rate_limit_key("yahoo"), redis_keys.PROVIDER_RATE_LIMIT),
            (redis_keys.fetch_job_key("j-1", "spec"), redis_keys.FETCH_JOB),
            (redis_keys.submit_window_key("submit", "u1", 60), redis_keys.SUBMIT_RATE_LIMIT),
        ],
    )
    def test_each_builder_stays_in_its_family(self, key: str, family: str) -> None:
        """Each builder's key starts with its own family's prefix and with no other's."""
        assert [f for f in redis_keys.FAMILIES if key.startswith(f)] == [family]

    def test_fetch_job_parts_are_distinct(self) -> None:
        """Two parts of one fetch job, or one part of two jobs, never share a key."""
        keys = {redis_keys.fetch_job_key(j, p) for j in ("a", "b") for p in ("spec", "done")}
        assert len(keys) == 4
