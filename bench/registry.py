"""Registry benchmark: the in-memory view's memory against a plain dict of the same records,
DevEUI lookups at 1k, 10k and 100k devices, and the import rate through the real store on Kafka.

    python -m bench.registry [--devices 100000] [--import-devices 10000] [--no-kafka]

Memory is measured with tracemalloc: the plain baseline is ``{id: json.loads(record)}`` of the
same records the view applies (the JSON texts themselves are allocated before either is
measured). The view's figure includes every index (by id, by DevEUI, per tenant, type use).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import time
import tracemalloc
import uuid
from typing import Any

from cityhub.schemas.registry import DeviceSpec, DeviceTypeSpec, TenantSpec
from cityhub.schemas.settings import Settings
from cityhub.streams.registry.principals import Principal
from cityhub.streams.registry.service import Registry
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.registry.view import RegistryView

TENANTS = [f"operator-{i}" for i in range(8)]
TYPES = ["air-quality", "noise", "parking", "water-level", "footfall", "weather"]
AREAS = [f"district-{i:02d}" for i in range(40)]
TAGS = ["roof", "street", "pole", "bridge", "school", "park", "pilot", "battery"]


def network_binding(i: int) -> dict[str, Any] | None:
    """Two devices in three are bound to their network-server application: one application per
    operator and device type, on The Things Stack or on ChirpStack."""
    if i % 3 == 0:
        return None
    tenant, device_type = TENANTS[i % len(TENANTS)], TYPES[i % len(TYPES)]
    if i % 2:
        return {"server": "tts", "application": f"{tenant}-{device_type}", "tenant": "city"}
    application = uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{device_type}")
    return {"server": "chirpstack", "application": str(application)}


def device_record(i: int, rng: random.Random) -> dict[str, Any]:
    """A realistic device record as the registry topic carries it."""
    created = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}."
    created += f"{i % 1000:03d}Z"
    return {
        "kind": "device",
        "tenant": TENANTS[i % len(TENANTS)],
        "id": f"{TYPES[i % len(TYPES)]}-{i:06d}",
        "name": f"{TYPES[i % len(TYPES)].replace('-', ' ').title()} sensor {i}",
        "type": TYPES[i % len(TYPES)],
        "dev_eui": f"70b3d57ed{i:07x}",
        "location": {
            "latitude": round(52.0 + rng.random() * 0.2, 6),
            "longitude": round(4.8 + rng.random() * 0.3, 6),
            "altitude": None if i % 3 else round(rng.random() * 40, 1),
        },
        "area": AREAS[i % len(AREAS)],
        "tags": rng.sample(TAGS, k=i % 3),
        "active": i % 17 != 0,
        "app_key_sha256": f"{rng.getrandbits(256):064x}" if i % 2 else None,
        "network": network_binding(i),
        "created_at": created,
        "updated_at": created,
    }


def measure_memory(n: int) -> tuple[int, int]:
    rng = random.Random(1)
    texts = [
        (f"device/{d['id']}", json.dumps(d).encode())
        for d in (device_record(i, rng) for i in range(n))
    ]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        plain = {key: json.loads(value) for key, value in texts}
        plain_bytes = tracemalloc.get_traced_memory()[0] - base
        del plain
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        view = RegistryView()
        for offset, (key, value) in enumerate(texts):
            view.apply(key, value, offset)
        view_bytes = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert view.device_count() == n
    assert view.malformed == 0
    return plain_bytes, view_bytes


def lookup_rate(n: int, lookups: int = 1_000_000) -> float:
    """ns per ``device_by_eui`` over a view of ``n`` devices, keys in random order."""
    rng = random.Random(2)
    view = RegistryView()
    for i in range(n):
        d = device_record(i, rng)
        view.apply(f"device/{d['id']}", json.dumps(d).encode(), i)
    euis = [f"70b3d57ed{rng.randrange(n):07x}" for _ in range(4096)]
    probes = (euis * (lookups // len(euis) + 1))[:lookups]
    lookup = view.device_by_eui
    start = time.perf_counter()
    for eui in probes:
        lookup(eui)
    return (time.perf_counter() - start) / lookups * 1e9


async def import_rate(n: int) -> tuple[float, float]:
    """Records/s of ``Registry.import_devices`` of ``n`` new devices through Kafka, and seconds
    for a second store to load them at start."""
    base = Settings()
    prefix = f"bench-registry-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(
        update={"kafka": base.kafka.model_copy(update={"topic_prefix": prefix})}
    )
    store = RegistryStore(settings)
    await store.start()
    try:
        registry = Registry(store)
        admin = Principal.system()
        await registry.create_tenant(admin, TenantSpec(id="city", name="City"))
        for t in TYPES:
            await registry.create_type(admin, "city", DeviceTypeSpec(id=t, name=t))
        rng = random.Random(3)
        rows = []
        for i in range(n):
            d = device_record(i, rng)
            d.pop("kind")
            d.pop("tenant")
            d.pop("app_key_sha256")
            d.pop("created_at")
            d.pop("updated_at")
            rows.append(DeviceSpec.model_validate(d))
        start = time.perf_counter()
        report = await registry.import_devices(admin, "city", rows)
        elapsed = time.perf_counter() - start
        assert report.created == n, report.failed
    finally:
        await store.stop()
    second = RegistryStore(settings, client_id="bench-registry-reload")
    start = time.perf_counter()
    await second.start()
    load = time.perf_counter() - start
    try:
        assert second.view.device_count() == n
    finally:
        await second.stop()
    return n / elapsed, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--import-devices", type=int, default=10_000)
    parser.add_argument("--no-kafka", action="store_true", help="skip the import through Kafka")
    args = parser.parse_args()

    plain, view = measure_memory(args.devices)
    print(f"memory, {args.devices} devices:")
    n = args.devices
    print(f"  plain dict of decoded records  {plain / 1e6:8.1f} MB  {plain / n:6.0f} B/device")
    print(f"  registry view (with indexes)   {view / 1e6:8.1f} MB  {view / n:6.0f} B/device")
    print(f"  ratio view / plain             {view / plain:8.2f}   (target <= 1.00)")

    print("device_by_eui, 1M lookups:")
    for n in (1_000, 10_000, 100_000):
        print(f"  {n:>7} devices  {lookup_rate(n):6.0f} ns/lookup")

    if not args.no_kafka:
        rate, load = asyncio.run(import_rate(args.import_devices))
        print(f"import through Kafka, {args.import_devices} devices: {rate:,.0f} records/s")
        print(f"a new instance loads them in {load:.2f} s")


if __name__ == "__main__":
    main()
