"""The official OGC SensorThings conformance suite (``org.opengis.cite:ets-sta10`` 1.5 from
Maven Central, ``deploy/ogc-ets/pom.xml``) run with TestNG against the hub's ``/sta/v1.1``
over the real history store (a loopback proxy adds the API key the suite does not send).

- The suite as published (``testng.xml``): the sensing core class must pass whole. Its
  filtering extension class creates its fixture with POST and PATCH, which a read-only service
  refuses, and TestNG then skips all its tests (none may fail).
- The filtering class's test methods, unchanged, with that fixture and its DELETE clean-up
  disabled (``testng-readonly-filtering.xml``, ``shim/``): the four that check the query
  options over every entity set and relation must pass; the four that compare with the
  fixture's own entity counts may fail, and only they (README "SensorThings")."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from cityhub.schemas.settings import Settings
from tests.integration.hub import free_port
from tests.integration.sta_data import seed_history, seed_registry, serve

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ETS_DIR = REPO / "deploy" / "ogc-ets"
JARS = REPO / "build" / "ogc-ets" / "jars"
SENSING_CORE = "org.opengis.cite.sta10.sensingCore.Capability1Tests"
FILTERING = "org.opengis.cite.sta10.filteringExtension.Capability3Tests"
READ_ONLY_FILTERING = "city.cityhub.ets.ReadOnlyFiltering"
QUERY_OPTION_TESTS = (
    "readEntitiesWithSelectQO",
    "readEntitiesWithExpandQO",
    "readEntitiesWithOrderbyQO",
    "readEntitiesWithFilterQO",
)
FIXTURE_COUNT_TESTS = (
    "readEntitiesWithTopQO",
    "readEntitiesWithSkipQO",
    "readEntitiesWithCountQO",
    "checkQueriesPriorityOrdering",
)


def ets_jars() -> Path:
    """The suite's jars, fetched with Maven once (``make ogc-ets`` does the same)."""
    if not any(JARS.glob("ets-sta10-*.jar")):
        mvn = shutil.which("mvn")
        assert mvn, "Maven is needed to fetch the OGC suite (apt-get install maven)"
        subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(ETS_DIR / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={JARS}",
            ],
            check=True,
            timeout=900,
        )
    return JARS


@asynccontextmanager
async def keyed_proxy(root: str, key: str) -> AsyncIterator[str]:
    """A loopback proxy that adds the API key to every request (the suite sends none) and
    passes its Host header on, so that the links the service writes lead back through it."""
    upstream = root.split("/sta/", 1)[0]

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {"X-API-Key": key, "Host": request.host}
        if "Content-Type" in request.headers:
            headers["Content-Type"] = request.headers["Content-Type"]
        async with session.request(
            request.method, upstream + request.path_qs, headers=headers, data=await request.read()
        ) as response:
            body = await response.read()
            passed = {
                k: v
                for k, v in response.headers.items()
                if k.lower() in ("content-type", "location")
            }
            return web.Response(status=response.status, body=body, headers=passed)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    async with aiohttp.ClientSession() as session:
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}/sta/v1.1"
        finally:
            await runner.cleanup()


def results_by_class(report: Path) -> dict[str, dict[str, list[str]]]:
    """``{class: {"PASS": [...], "FAIL": [...], "SKIP": [...]}}`` of the test methods in a
    TestNG results file (configuration methods left out)."""
    found: dict[str, dict[str, list[str]]] = {}
    for cls in ET.parse(report).getroot().iter("class"):
        for method in cls.iter("test-method"):
            if method.get("is-config") == "true":
                continue
            status = method.get("status", "?")
            found.setdefault(cls.get("name", "?"), {}).setdefault(status, []).append(
                str(method.get("name"))
            )
    return found


async def run_suite(
    settings: Settings, tmp_path: Path, suite_file: str, classpath: str
) -> dict[str, dict[str, list[str]]]:
    """Run one TestNG suite file of ``deploy/ogc-ets`` against a served hub; its results."""
    registry, keys = await seed_registry()
    async with serve(registry, settings) as root, keyed_proxy(root, keys.city) as iut:
        suite = tmp_path / suite_file
        suite.write_text((ETS_DIR / suite_file).read_text().replace("@IUT@", iut))
        java = shutil.which("java")
        assert java, "a Java runtime is needed for the OGC suite"
        out = tmp_path / f"out-{suite_file}"
        process = await asyncio.create_subprocess_exec(
            java,
            "-cp",
            classpath,
            "org.testng.TestNG",
            "-d",
            str(out),
            str(suite),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    results = results_by_class(out / "testng-results.xml")
    print(output.decode(errors="replace")[-2000:])
    print({cls: {s: len(m) for s, m in by.items()} for cls, by in results.items()})
    return results


@pytest.fixture(scope="module")
def seeded(history_settings: Settings) -> Settings:
    asyncio.run(seed_history(history_settings))
    return history_settings


async def test_the_ogc_suite_passes_the_sensing_core(seeded: Settings, tmp_path: Path) -> None:
    jars = await asyncio.to_thread(ets_jars)
    results = await run_suite(seeded, tmp_path, "testng.xml", f"{jars}/*")
    core = results[SENSING_CORE]
    assert not core.get("FAIL"), core
    assert not core.get("SKIP"), core
    assert len(core["PASS"]) == 6
    # Its fixture POSTs entities: refused by a read-only service, so TestNG skips the tests.
    assert not results.get(FILTERING, {}).get("FAIL"), results[FILTERING]


async def test_the_filtering_tests_pass_on_a_read_only_service(
    seeded: Settings, tmp_path: Path
) -> None:
    jars = await asyncio.to_thread(ets_jars)
    classes = tmp_path / "shim"
    javac = shutil.which("javac")
    assert javac, "a JDK (javac) is needed to build the read-only shim of the filtering class"
    sources = sorted(str(p) for p in (ETS_DIR / "shim").rglob("*.java"))
    compile_shim = [javac, "-d", str(classes), "-cp", f"{jars}/*", *sources]
    await asyncio.to_thread(subprocess.run, compile_shim, check=True, timeout=300)
    results = await run_suite(
        seeded, tmp_path, "testng-readonly-filtering.xml", f"{classes}:{jars}/*"
    )
    filtering = results[READ_ONLY_FILTERING]
    # The query options over every entity set and every relation, as the suite checks them.
    assert set(QUERY_OPTION_TESTS) <= set(filtering.get("PASS", [])), filtering
    # The other four compare with the counts of the suite's own fixture (2 Things, 4 Sensors,
    # 4 HistoricalLocations, 12 Observations with results 1 to 12): README "SensorThings".
    assert set(filtering.get("FAIL", [])) <= set(FIXTURE_COUNT_TESTS), filtering
