"""The one-way import rule and the package faces, checked on every module's own imports.

service/ never imports workers/; workers/ imports only service.core and service.portfolio
from service/; workers.market_data and workers.analytics do not import each other.
`lint-imports` (pyproject's [tool.importlinter]) checks the same rule, indirect chains too.

Faces: code outside a domain package (`DOMAINS`) uses only what the package's `__init__`
exports in `__all__` (or a public subpackage's `__init__`, one that declares `__all__`);
its other modules are private. service.core and service.portfolio are libraries of small
public modules, imported module by module. Tests may reach private modules to unit-test
them; production code may not.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

WORKERS_MAY_USE = ("service.core", "service.portfolio")
DOMAINS = (
    "service.api",
    "service.cli",
    "service.dev",
    "service.scheduler",
    "workers.analytics",
    "workers.maintenance",
    "workers.market_data",
)
SEPARATE = ("workers.market_data", "workers.analytics")


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violation(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported`, or None if the rule allows it."""
    if _within(importer, "service") and _within(imported, "workers"):
        return "service/ never imports workers/"
    if (
        _within(importer, "workers")
        and _within(imported, "service")
        and imported != "service"
        and not any(_within(imported, allowed) for allowed in WORKERS_MAY_USE)
    ):
        return "workers/ imports only service.core and service.portfolio from service/"
    for a, b in itertools.permutations(SEPARATE, 2):
        if _within(importer, a) and _within(imported, b):
            return f"{a} does not import {b}"
    return None


def exports(package: str) -> frozenset[str] | None:
    """The names in `package`'s `__init__` `__all__`, or None if it is not a public face."""
    init = ROOT.joinpath(*package.split("."), "__init__.py")
    if not init.exists():
        return None
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return frozenset(ast.literal_eval(node.value))
    return None


def face_violation(importer: str, imported: str) -> str | None:
    """Why `importer` may not reach `imported` behind a package's face, or None."""
    domain = next((d for d in DOMAINS if _within(imported, d)), None)
    if domain is None or _within(importer, domain):
        return None
    face, rest = domain, imported.removeprefix(domain).lstrip(".").split(".")
    while rest and rest[0]:
        names = exports(face)
        if names is None:
            return f"{face} has no public face (__all__)"
        if rest[0] in names and len(rest) == 1:
            return None
        sub = f"{face}.{rest[0]}"
        if exports(sub) is None:
            return f"{sub} is private to {domain}; import what {face} exports"
        face, rest = sub, rest[1:]
    return None


def module_name(path: Path) -> str:
    """The dotted module name of a source file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, *, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in `source`, nested ones included, relative ones
    resolved; `from a import b` yields both `a` and `a.b` (b may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            named = [node.module] if node.module else []
            target = ".".join([*parts, *named] if node.level else named)
            yield node.lineno, target
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{target}.{alias.name}"


def broken_imports() -> list[str]:
    """Every import under service/ and workers/ that breaks the rule, as `file:line: …`."""
    found = []
    for path in sorted(itertools.chain(ROOT.glob("service/**/*.py"), ROOT.glob("workers/**/*.py"))):
        importer = module_name(path)
        is_package = path.name == "__init__.py"
        for line, imported in imported_modules(
            path.read_text(), module=importer, is_package=is_package
        ):
            reason = violation(importer, imported) or face_violation(importer, imported)
            if reason is not None:
                found.append(f"{path.relative_to(ROOT)}:{line}: imports {imported} ({reason})")
    return sorted(set(found))


class TestImportRule:
    def test_the_tree_keeps_the_rule(self) -> None:
        """No module under service/ or workers/ imports across the one-way rule."""
        assert broken_imports() == []

    @pytest.mark.parametrize(
        ("importer", "imported", "allowed"),
        [
            ("service.api.tasks", "workers.tasks", False),
            ("service.core.celery_config", "workers", False),
            ("service.scheduler.jobs", "service.core.publisher", True),
            ("workers.runtime", "service.core.settings", True),
            ("workers.analytics.tasks", "service.portfolio.core", True),
            ("workers.tasks", "service", True),
            ("workers.tasks", "service.api.task_schemas", False),
            ("workers.heartbeat", "service.cli.main", False),
            ("workers.demo_seed", "service.dev.embedded", False),
            ("workers.maintenance.cleanup", "service.scheduler.ledger", False),
            ("workers.market_data.tasks", "workers.analytics.metrics", False),
            ("workers.analytics.tasks", "workers.market_data.store", False),
            ("workers.analytics.tasks", "workers.runtime", True),
            ("workers.tasks", "workers.market_data.tasks", True),
            ("workers.market_database", "workers.analytics", True),
        ],
    )
    def test_rule(self, importer: str, imported: str, allowed: bool) -> None:
        """The rule allows and refuses exactly the imports the layering describes."""
        assert (violation(importer, imported) is None) == allowed

    @pytest.mark.parametrize(
        ("importer", "imported", "allowed"),
        [
            ("workers.tasks", "workers.market_data", True),
            ("workers.tasks", "workers.market_data.fetch_market_data", True),
            ("workers.tasks", "workers.market_data.tasks", False),
            ("workers.demo_seed", "workers.market_data.store", False),
            ("workers.demo_seed", "workers.market_data.simulated_exchange", True),
            ("workers.demo_seed", "workers.market_data.simulated_exchange.build_series", True),
            ("workers.demo_seed", "workers.market_data.simulated_exchange.series", False),
            ("workers.market_data.tasks", "workers.market_data.store", True),
            ("service.cli.schedule", "service.scheduler.ledger", True),
            ("service.cli.schedule", "service.scheduler.plan", False),
            ("service.api.tasks", "service.core.task_registry", True),
        ],
    )
    def test_faces(self, importer: str, imported: str, allowed: bool) -> None:
        """Outside a domain package only its exported names (and public subpackages) are
        reachable; inside it every module is."""
        assert (face_violation(importer, imported) is None) == allowed

    def test_every_domain_package_has_a_face(self) -> None:
        """Each domain package's `__init__` declares the names others may use."""
        assert {d: exports(d) is not None for d in DOMAINS} == dict.fromkeys(DOMAINS, True)

    def test_imports_are_found_everywhere(self) -> None:
        """Nested, relative and `from a import b` imports are all resolved to module names."""
        source = (
            "import workers.tasks\n"
            "def f():\n    from service import api\n"
            "from ..core import settings\n"
            "from . import fetch\n"
        )
        found = list(imported_modules(source, module="service.api.app", is_package=False))
        assert found == [
            (1, "workers.tasks"),
            (4, "service.core"),
            (4, "service.core.settings"),
            (5, "service.api"),
            (5, "service.api.fetch"),
            (3, "service"),
            (3, "service.api"),
        ]
