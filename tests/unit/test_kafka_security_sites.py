"""Every aiokafka client the hub makes comes from ``cityhub.connectors.kafka_clients``: a module
that built one itself would connect without the TLS and SASL settings (issue 12)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("schemas", "connectors", "streams")
CLIENT_CLASSES = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}
FACTORY_MODULE = "connectors/kafka_clients.py"


def client_constructions(source: str) -> list[int]:
    """Lines where ``source`` calls an aiokafka client class, by name or as an attribute."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in CLIENT_CLASSES:
                lines.append(node.lineno)
    return lines


def test_the_scan_finds_a_construction() -> None:
    assert client_constructions("import aiokafka\nc = aiokafka.AIOKafkaConsumer('t')\n") == [2]
    assert client_constructions("p = AIOKafkaProducer(bootstrap_servers='x')\n") == [1]
    assert client_constructions("p: AIOKafkaProducer | None = None\n") == []


def test_only_the_factories_make_aiokafka_clients() -> None:
    outside = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative == FACTORY_MODULE:
                continue
            lines = client_constructions(path.read_text())
            if lines:
                outside[relative] = lines
    assert not outside, (
        "make aiokafka clients with cityhub.connectors.kafka_clients (kafka_producer, "
        f"kafka_consumer, kafka_admin), which add the security settings: {outside}"
    )


def test_the_factory_module_is_where_the_scan_looks() -> None:
    assert client_constructions((ROOT / FACTORY_MODULE).read_text())
