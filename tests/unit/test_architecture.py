"""The architecture contracts of ``pyproject.toml`` (``[tool.importlinter]``, run by ``make lint``
as ``lint-imports``): they hold, they fail when an import breaks them (directly or through
another module), and every module whose docstring says it is pure is under the purity contract,
so that a new or split pure module cannot slip out of it unnoticed."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.api import read_configuration
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract
from importlinter.domain.contract import Contract, ContractCheck

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {
    "schemas": "cityhub.schemas",
    "connectors": "cityhub.connectors",
    "streams": "cityhub.streams",
}
CONFIG = read_configuration(str(ROOT / "pyproject.toml"))
SAYS_PURE = re.compile(r"(?:^|[.!?:]\s+)Pure\b")
"""A sentence of the docstring starts with "Pure" ("Pure: no I/O.", "Pure and fast")."""


def build_graph() -> grimp.ImportGraph:
    session = CONFIG["session_options"]
    return grimp.build_graph(
        *session["root_packages"],
        include_external_packages=True,
        exclude_type_checking_imports=True,
        cache_dir=None,
    )


def options(contract_id: str) -> dict[str, Any]:
    for contract in CONFIG["contracts_options"]:
        if contract.get("id") == contract_id:
            return dict(contract)
    raise AssertionError(f"no contract {contract_id!r} in pyproject.toml")


def check(contract_id: str, graph: grimp.ImportGraph) -> ContractCheck:
    found = options(contract_id)
    kinds: dict[str, type[Contract]] = {"layers": LayersContract, "forbidden": ForbiddenContract}
    contract = kinds[found["type"]](
        name=found["name"], session_options=CONFIG["session_options"], contract_options=found
    )
    return contract.check(graph, verbose=False)


def add(graph: grimp.ImportGraph, importer: str, imported: str) -> None:
    graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="import")


def pure_sources() -> list[str]:
    return sorted(str(m) for m in options("pure")["source_modules"])


def module_docstrings() -> dict[str, str]:
    """Every module of the three packages, by its ``cityhub.`` name, with its docstring."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            found[name] = ast.get_docstring(ast.parse(path.read_text())) or ""
    return found


@pytest.mark.parametrize("contract_id", ["layers", "pure"])
def test_the_contracts_hold(contract_id: str) -> None:
    result = check(contract_id, build_graph())
    assert result.kept, result.metadata


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("cityhub.schemas.errors", "cityhub.connectors.plugins"),
        ("cityhub.schemas.settings", "cityhub.streams.metrics"),
        ("cityhub.connectors.measurements", "cityhub.streams.metrics"),
    ],
)
def test_an_import_up_the_layers_breaks_the_layers_contract(importer: str, imported: str) -> None:
    graph = build_graph()
    add(graph, importer, imported)
    assert not check("layers", graph).kept


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("cityhub.streams.normaliser.normalise", "aiokafka"),
        ("cityhub.connectors.formats.tts", "aiomqtt"),
        ("cityhub.schemas.observation", "socket"),
        ("cityhub.streams.subscriptions.filter", "asyncio"),
        # Indirect: through a module that does I/O.
        ("cityhub.streams.normaliser.dedup", "cityhub.streams.compacted"),
        ("cityhub.streams.delivery.batch", "cityhub.connectors.sinks.webhook"),
    ],
)
def test_an_io_import_breaks_the_purity_contract(importer: str, imported: str) -> None:
    graph = build_graph()
    add(graph, importer, imported)
    assert not check("pure", graph).kept


def test_every_module_that_says_it_is_pure_is_under_the_purity_contract() -> None:
    sources = pure_sources()
    claims = [name for name, doc in module_docstrings().items() if SAYS_PURE.search(doc)]
    assert claims, "no module says it is pure: the docstring pattern is wrong"
    uncovered = [
        name for name in claims if not any(name == s or name.startswith(f"{s}.") for s in sources)
    ]
    assert not uncovered, (
        f"these modules say they are pure but no contract checks it: {uncovered}; add them to "
        "[tool.importlinter] contract 'pure' in pyproject.toml"
    )
