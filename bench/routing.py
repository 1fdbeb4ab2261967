"""Routing cost per observation: 10 000 subscriptions over 100 tenants against 10, in one run.

    python -m bench.routing [--observations 20000] [--runs 5]

The question: does one tenant's thousands of subscriptions slow everybody's data down? Both
routers (``cityhub.streams.subscriptions.router`` and ``.linear_router``) route the same
observation stream, first with the first 10 subscriptions of a city, then with all 10 000: the
indexed ``SubscriptionRouter`` the worker runs, and the linear reference that evaluates every
subscription's filter on every observation (what the worker did before). Pure CPU, no broker.

The city (seeded, the same every run): the simulator's fleet of 5 000 devices (its kinds and
their shares, quantities and locations), owned by 100 tenants of 50 devices each in a few of
48 neighbourhoods, with tags; air-quality, water-level and weather devices are public in six
tenants out of ten, foot counters personal, the rest internal. Each tenant has 100
subscriptions over its own devices and areas: a few device ids (34 %, half with quantities),
an area with quantities (25 %) or with a tag (10 %), quantities in a box around an area
(10 %), a tag with a quantity (10 %), quantities alone (5 %), a box alone (5 %), and one that
takes everything (its data lake: 1 %). By the tenant rule, all but the device-id ones also
receive other tenants' public data: a public observation goes to some 160 topics. The
observations: one per quantity of uplinks from random devices of every tenant, as the
normaliser routes them (``Observation`` objects).

Prints microseconds per observation (median of ``--runs``, each run timing both sizes back to
back), the topics each observation goes to, the machine's load average beside each run,
``ratio 10000/10: R`` for the indexed router (target <= 5) and the linear one, the cost of a
tenant's non-public observations with only its own subscriptions against with all 10 000 (the
issue's question: other tenants' subscriptions must not add to it), and what one refresh costs
when one of 10 000 subscriptions changes (routing polls every 0.2 s).

Agreements (issue 13): the same 10 000 subscriptions served by webhooks (which may receive items
under agreements), routed without a grants source, with one that holds no agreement, and with
``--agreements`` agreements in force (tenant i offers its internal observations of one of its
areas to tenant i+1, to its webhook subscriptions): the cost per observation of tenants that
provide nothing (must not change) and of the providers' own observations.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.stats import machine, median, today
from cityhub.connectors.sinks import subscription_models
from cityhub.schemas.observation import Location, NetworkMeta, Observation
from cityhub.schemas.sharing import (
    Agreement,
    AgreementEvent,
    AgreementState,
    ItemKind,
    OfferSpec,
    Selection,
)
from cityhub.schemas.subscription import Subscription, SubscriptionSpec, build_subscription
from cityhub.streams.devtools.simulator import Kind, build_fleet
from cityhub.streams.devtools.simulator.fleet import CITY_BBOX
from cityhub.streams.sharing.grants import Grants
from cityhub.streams.subscriptions.linear_router import LinearSubscriptionRouter
from cityhub.streams.subscriptions.router import SubscriptionRouter
from cityhub.streams.subscriptions.view import SubscriptionView

TENANTS = 100
DEVICES_PER_TENANT = 50
SUBSCRIPTIONS_PER_TENANT = 100
SMALL = 10
GRID = (8, 6)  # 48 neighbourhoods over the city's box
TAGS = ("school", "park", "street", "pole", "roof", "bridge", "pilot", "canal")
PUBLIC_KINDS = frozenset({Kind.AIR_QUALITY, Kind.WATER_LEVEL, Kind.WEATHER})
PERSONAL_KINDS = frozenset({Kind.FOOTFALL})
NOW = "2026-12-01T10:00:00.000Z"
PREFIX = "cityhub"


@dataclass(frozen=True, slots=True)
class CityDevice:
    tenant: str
    device_id: str
    kind: Kind
    quantities: tuple[str, ...]
    area: str
    location: Location
    tags: tuple[str, ...]
    classification: str


def _area_of(lat: float, lon: float) -> tuple[str, tuple[float, float, float, float]]:
    """The neighbourhood (a grid cell of the city's box) of a point, and the cell's box."""
    south, west, north, east = CITY_BBOX
    cols, rows = GRID
    col = min(cols - 1, int((lon - west) / (east - west) * cols))
    row = min(rows - 1, int((lat - south) / (north - south) * rows))
    height, width = (north - south) / rows, (east - west) / cols
    box = (
        south + row * height,
        south + (row + 1) * height,
        west + col * width,
        west + (col + 1) * width,
    )
    return f"buurt-{row}{col}", box


def city(seed: int = 7) -> list[CityDevice]:
    """The fleet, with tenants, areas, tags and classifications (see the module docstring)."""
    rng = random.Random(seed)
    fleet = build_fleet(TENANTS * DEVICES_PER_TENANT, seed=seed)
    public_tenants = {t for t in range(TENANTS) if rng.random() < 0.6}
    devices = []
    for i, d in enumerate(fleet.devices):
        t = i % TENANTS
        # A tenant's devices sit in a few neighbourhoods: pull each towards one of its own.
        anchor = random.Random(f"{seed}:{t}:{rng.randrange(4)}")
        lat = anchor.uniform(CITY_BBOX[0], CITY_BBOX[2]) + rng.gauss(0, 0.003)
        lon = anchor.uniform(CITY_BBOX[1], CITY_BBOX[3]) + rng.gauss(0, 0.005)
        area, _ = _area_of(lat, lon)
        if d.kind in PUBLIC_KINDS and t in public_tenants:
            classification = "public"
        elif d.kind in PERSONAL_KINDS:
            classification = "personal"
        else:
            classification = "internal"
        devices.append(
            CityDevice(
                tenant=f"tenant-{t:03d}",
                device_id=f"t{t:03d}-{d.device_id}",
                kind=d.kind,
                quantities=d.quantities,
                area=area,
                location=Location(lat, lon),
                tags=tuple(rng.sample(TAGS, k=rng.choice((0, 1, 1, 2)))),
                classification=classification,
            )
        )
    return devices


def _filter(rng: random.Random, own: Sequence[CityDevice]) -> dict[str, Any]:
    """A realistic filter of a tenant over its own devices (shares in the module docstring)."""
    device = rng.choice(own)
    quantities = sorted({q for d in own for q in d.quantities})
    pick = rng.random()
    if pick < 0.34:
        doc: dict[str, Any] = {
            "device_ids": [d.device_id for d in rng.sample(own, rng.randint(1, 5))]
        }
        if rng.random() < 0.5:
            doc["quantities"] = rng.sample(device.quantities, min(2, len(device.quantities)))
        return doc
    if pick < 0.59:
        return {
            "areas": [device.area],
            "quantities": rng.sample(quantities, min(len(quantities), rng.randint(1, 3))),
        }
    if pick < 0.69:
        return {"areas": [device.area], "tags": [rng.choice(TAGS)]}
    _, (south, north, west, east) = _area_of(device.location.latitude, device.location.longitude)
    box = {"min_lat": south, "max_lat": north, "min_lon": west, "max_lon": east}
    if pick < 0.79:
        return {
            "quantities": rng.sample(quantities, min(len(quantities), rng.randint(1, 2))),
            "bbox": box,
        }
    if pick < 0.89:
        return {"tags": rng.sample(TAGS, rng.randint(1, 2)), "quantities": [rng.choice(quantities)]}
    if pick < 0.94:
        return {"quantities": [rng.choice(quantities)]}
    if pick < 0.99:
        return {"bbox": box}
    return {}


def subscriptions(devices: Sequence[CityDevice], seed: int = 11) -> list[Subscription]:
    """Every tenant's subscriptions, interleaved by tenant (the first ten: one each of ten)."""
    rng = random.Random(seed)
    by_tenant: dict[str, list[CityDevice]] = {}
    for d in devices:
        by_tenant.setdefault(d.tenant, []).append(d)
    records = []
    for n in range(SUBSCRIPTIONS_PER_TENANT):
        for tenant, own in by_tenant.items():
            spec = SubscriptionSpec.model_validate(
                {
                    "id": f"s{n:03d}",
                    "name": f"s{n}",
                    "filter": _filter(rng, own),
                    "delivery": {"kind": "kafka"},
                }
            )
            records.append(build_subscription(spec, tenant=tenant, now=NOW)[0])
    return records


def observations(devices: Sequence[CityDevice], count: int, seed: int = 13) -> list[Observation]:
    """``count`` observations: every quantity of uplinks of random devices of every tenant."""
    rng = random.Random(seed)
    out: list[Observation] = []
    while len(out) < count:
        d = rng.choice(devices)
        for quantity in d.quantities:
            out.append(
                Observation(
                    event_id=f"e{len(out)}",
                    device_id=d.device_id,
                    dev_eui=None,
                    quantity=quantity,
                    field=quantity,
                    value=1.0,
                    unit=None,
                    observed_at=NOW,
                    received_at=NOW,
                    format="cityhub-json",
                    network=NetworkMeta(name="tts"),
                    tenant=d.tenant,
                    device_type=d.kind.value,
                    location=d.location,
                    area=d.area,
                    tags=d.tags,
                    classification=d.classification,
                )
            )
    return out[:count]


Route = Callable[[Observation], list[str]]


def per_observation_us(route: Route, sample: Sequence[Observation]) -> float:
    started = time.perf_counter()
    for o in sample:
        route(o)
    return (time.perf_counter() - started) / len(sample) * 1e6


def topics_per_observation(route: Route, sample: Sequence[Observation]) -> float:
    return sum(len(route(o)) for o in sample) / len(sample)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def refresh_ms(records: Sequence[Subscription]) -> tuple[float, float]:
    """What the routing loop does when the view changed (``Routing.sync`` without Kafka):
    list the view, name each topic, refresh the router; after one of ``records`` changed.
    Returns (ms for that, ms for the first refresh of all of them)."""
    view = SubscriptionView()
    for offset, r in enumerate(records):
        view.apply(f"subscription/{r.tenant}/{r.id}", r.model_dump_json().encode(), offset)
    router = SubscriptionRouter(PREFIX)
    started = time.perf_counter()
    router.refresh(view.all())
    first = (time.perf_counter() - started) * 1000
    timings = []
    for n in range(5):
        target = records[n * 1999]
        changed = target.model_copy(
            update={"filter": target.filter.model_copy(update={"tags": ["new"]})}
        )
        view.apply(
            f"subscription/{target.tenant}/{target.id}",
            changed.model_dump_json().encode(),
            len(records) + n,
        )
        started = time.perf_counter()
        current = view.all()
        known = {router.topic_of(r) for r in current}
        assert router.refresh(current, ready_topics=known)
        timings.append((time.perf_counter() - started) * 1000)
    return min(timings), first


def isolation_us(
    records: Sequence[Subscription], stream: Sequence[Observation], runs: int
) -> tuple[float, float]:
    """Microseconds per non-public observation routed by a router with only its own tenant's
    subscriptions, and by one with every tenant's (medians of ``runs``)."""
    mine: dict[str, list[Subscription]] = {}
    for r in records:
        mine.setdefault(r.tenant, []).append(r)
    alone: dict[str, SubscriptionRouter] = {}
    for tenant, subs in mine.items():
        alone[tenant] = SubscriptionRouter(PREFIX)
        alone[tenant].refresh(subs)
    everyone = SubscriptionRouter(PREFIX)
    everyone.refresh(records)
    own = [o for o in stream if o.classification != "public"]
    tenants = [alone[o.tenant or ""] for o in own]
    by_own, by_all = [], []
    for _ in range(runs):
        started = time.perf_counter()
        for router, o in zip(tenants, own, strict=True):
            router.route(o)
        by_own.append((time.perf_counter() - started) / len(own) * 1e6)
        by_all.append(per_observation_us(everyone.route, own))
    return median(by_own), median(by_all)


def _agreement(provider: CityDevice, consumer: str, n: int) -> Agreement:
    spec = OfferSpec(
        id="offer",
        title="Offer",
        description="The provider's observations of one area",
        selection=Selection(areas=[provider.area]),
        kinds=[ItemKind.OBSERVATIONS],
        purposes=["benchmark"],
    )
    events = [
        AgreementEvent(state=AgreementState.REQUESTED, at=NOW, by_tenant=consumer),
        AgreementEvent(state=AgreementState.APPROVED, at=NOW, by_tenant=provider.tenant),
    ]
    return Agreement(
        id=f"agr-{n}",
        provider=provider.tenant,
        consumer=consumer,
        offer_id="offer",
        offer_spec=spec,
        purpose="benchmark",
        starts_at=None,
        ends_at="2099-01-01T00:00:00.000Z",
        state=AgreementState.APPROVED,
        requested_at=NOW,
        history=events,
    )


def agreements_us(
    devices: Sequence[CityDevice],
    records: Sequence[Subscription],
    stream: Sequence[Observation],
    count: int,
    runs: int,
) -> None:
    """Print the cost of routing under agreements (see the module docstring)."""
    spec = subscription_models().spec.model_validate(
        {"id": "hook", "name": "hook", "delivery": {"kind": "webhook", "url": "https://h.example/"}}
    )
    webhook = build_subscription(spec, tenant="x", now=NOW, new_secret=lambda: "whsec_" + "A" * 44)
    hooks = [r.model_copy(update={"delivery": webhook[0].delivery}) for r in records]
    first_of: dict[str, CityDevice] = {}
    for d in devices:
        first_of.setdefault(d.tenant, d)
    tenants = sorted(first_of)
    count = min(count, len(tenants) // 2)  # some tenants provide nothing: the figure to compare
    found = [
        _agreement(first_of[tenants[i]], tenants[(i + 1) % len(tenants)], i) for i in range(count)
    ]
    grants = Grants.from_agreements(found)
    empty = Grants()
    providers = {a.provider for a in found}
    internal = [o for o in stream if o.classification != "public"]
    others = [o for o in internal if o.tenant not in providers]
    theirs = [o for o in internal if o.tenant in providers]

    def router(source: Callable[[], Grants] | None) -> SubscriptionRouter:
        made = SubscriptionRouter(PREFIX, grants=source)
        made.refresh(hooks)
        return made

    plain, none, some = router(None), router(lambda: empty), router(lambda: grants)
    shared = sum(1 for o in theirs if any(some.grant_at(t) for t in some.route(o)))
    timings: dict[str, list[float]] = {"plain": [], "none": [], "others": [], "theirs": []}
    for _ in range(runs):
        timings["plain"].append(per_observation_us(plain.route, others))
        timings["none"].append(per_observation_us(none.route, others))
        timings["others"].append(per_observation_us(some.route, others))
        timings["theirs"].append(per_observation_us(some.route, theirs))
    print(
        f"  agreements ({count} in force, webhook subscriptions; {len(theirs)} providers' "
        f"non-public observations, {shared} of them shared): non-providers' observations "
        f"{median(timings['plain']):.2f} us without a grants source, "
        f"{median(timings['none']):.2f} with no agreement, {median(timings['others']):.2f} "
        f"with {count}; providers' observations {median(timings['theirs']):.2f} us"
    )


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--observations", type=int, default=20_000)
    parser.add_argument(
        "--linear-observations",
        type=int,
        default=500,
        help="observations for the linear router (with 10 000 subscriptions: ms each)",
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--agreements", type=int, default=10, help="agreements in force for the sharing figures"
    )
    args = parser.parse_args()

    devices = city()
    records = subscriptions(devices)
    stream = observations(devices, args.observations)
    linear_stream = stream[: args.linear_observations]
    public = [o for o in stream if o.classification == "public"]
    big = len(records)

    def build(
        kind: type[SubscriptionRouter] | type[LinearSubscriptionRouter],
        subs: Sequence[Subscription],
    ) -> Route:
        router = kind(PREFIX)
        router.refresh(subs)
        return router.route

    indexed = {
        SMALL: build(SubscriptionRouter, records[:SMALL]),
        big: build(SubscriptionRouter, records),
    }
    linear = {
        SMALL: build(LinearSubscriptionRouter, records[:SMALL]),
        big: build(LinearSubscriptionRouter, records),
    }
    for o in linear_stream:  # both route alike: the benchmark compares one behaviour's costs
        assert sorted(indexed[big](o)) == sorted(linear[big](o))

    print(f"routing benchmark, {today()}, {machine()}")
    print(
        f"  {TENANTS} tenants, {len(devices)} devices, {big} subscriptions; {len(stream)} "
        f"observations ({len(public) / len(stream):.0%} public), median of {args.runs} runs, "
        "one core"
    )
    for size in (SMALL, big):
        print(
            f"  {size:>6} subscriptions: {topics_per_observation(indexed[size], stream):6.2f} "
            f"topics/observation ({topics_per_observation(indexed[size], public):6.1f} per "
            "public one)"
        )
    print(f"  {load()} at start")
    results: dict[str, dict[int, list[float]]] = {
        "indexed": {SMALL: [], big: []},
        "linear": {SMALL: [], big: []},
    }
    ratios: dict[str, list[float]] = {"indexed": [], "linear": []}
    for run in range(args.runs):
        line = []
        for name, routers, sample in (
            ("indexed", indexed, stream),
            ("linear", linear, linear_stream),
        ):
            small = per_observation_us(routers[SMALL], sample)
            large = per_observation_us(routers[big], sample)
            results[name][SMALL].append(small)
            results[name][big].append(large)
            ratios[name].append(large / small)
            line.append(f"{name} {small:.2f} / {large:.2f} us")
        print(f"  run {run + 1}: {', '.join(line)}  ({load()})")
    for name in ("indexed", "linear"):
        print(
            f"  {name:8s} {median(results[name][SMALL]):8.2f} us/observation with {SMALL}, "
            f"{median(results[name][big]):8.2f} with {big}"
        )
    print(f"  unindexed (linear) ratio 10000/10: {median(ratios['linear']):.0f}")
    print(f"  ratio 10000/10: {median(ratios['indexed']):.2f}   (target <= 5)")
    alone, together = isolation_us(records, stream, args.runs)
    print(
        f"  non-public observations: {alone:.2f} us with only their tenant's subscriptions, "
        f"{together:.2f} us with all {big} (ratio {together / alone:.2f})"
    )
    agreements_us(devices, records, stream, args.agreements, args.runs)
    one_change, first = refresh_ms(records)
    print(
        f"  refresh of {big} subscriptions after one changed (view, topics, router): "
        f"{one_change:.1f} ms (best of 5; routing polls every 200 ms); first refresh {first:.0f} ms"
    )
    return {
        "indexed_small_us": median(results["indexed"][SMALL]),
        "indexed_large_us": median(results["indexed"][big]),
        "ratio": median(ratios["indexed"]),
        "linear_ratio": median(ratios["linear"]),
        "isolation_ratio": together / alone,
        "refresh_one_change_ms": one_change,
    }


if __name__ == "__main__":
    main()
