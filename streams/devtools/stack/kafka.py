"""The single-node Apache Kafka (KRaft, broker and controller in one JVM) of the local stack.

The jars come from Maven Central through ``deploy/kafka/pom.xml``; the configs are rendered into
the state dir; the storage is formatted once; the JVM runs detached with a pid file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
from pathlib import Path

from cityhub.connectors.kafka_security import credential_paths, secret_from_file_text
from cityhub.schemas.errors import StackError
from cityhub.schemas.settings import Settings, StackSettings
from cityhub.streams.devtools.stack import kafka_secure
from cityhub.streams.devtools.stack.config import (
    LOG4J2_TEMPLATE,
    SERVER_PROPERTIES_TEMPLATE,
    new_cluster_id,
    render_log4j2_properties,
    render_server_properties,
)
from cityhub.streams.devtools.stack.layout import StackLayout
from cityhub.streams.devtools.stack.pki import Pki, ensure_pki
from cityhub.streams.devtools.stack.process import ProcessSpec, start_detached, tail

log = logging.getLogger("cityhub.stack")

NAME = "kafka"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


def kafka_process(layout: StackLayout) -> ProcessSpec:
    """Our Kafka is the JVM running ``kafka.Kafka`` with this state dir's server.properties."""
    return ProcessSpec(
        name=NAME,
        pid_file=layout.kafka_pid,
        markers=(MAIN_CLASS, str(layout.kafka_server_properties)),
    )


def kafka_address(stack: StackSettings) -> str:
    return f"127.0.0.1:{stack.kafka_port}"


def kafka_argv(java: str, layout: StackLayout, heap: str) -> list[str]:
    """The broker's command line. G1 with short pauses, as Kafka's own start scripts run it."""
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={layout.kafka_log4j2}",
        "-cp",
        _classpath(layout),
        MAIN_CLASS,
        str(layout.kafka_server_properties),
    ]


def _classpath(layout: StackLayout) -> str:
    # The JVM expands "dir/*" itself (jars only); no shell globbing involved.
    return f"{layout.kafka_libs}/*"


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` is not on PATH; {hint}")
    return path


def java_binary() -> str:
    return _tool(
        "java", "install a JDK 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
    )


def pom_hash(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


async def _run(argv: list[str], *, cwd: Path, what: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        last = "\n".join(text.splitlines()[-30:])
        raise StackError(f"{what} failed (exit {proc.returncode}):\n{last}")
    return text


async def ensure_jars(layout: StackLayout, deploy_dir: Path) -> None:
    """Copy the broker's jars from Maven into ``libs``, once per version of the pom."""
    pom = deploy_dir / "kafka" / "pom.xml"
    wanted = pom_hash(pom)
    marker = layout.kafka_libs_marker
    if marker.is_file() and marker.read_text().strip() == wanted:
        return
    mvn = _tool("mvn", "install Maven (Debian: apt-get install maven) or run `make deps`")
    log.info("kafka: fetching the broker's jars with Maven (once per pom.xml; may take a minute)")
    staging = layout.kafka_dir / "libs.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    await _run(
        [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        cwd=layout.kafka_dir,
        what="mvn dependency:copy-dependencies (are Maven Central and ~/.m2 reachable?)",
    )
    if not any(staging.glob("kafka_2.13-*.jar")):
        raise StackError(f"Maven ran but copied no kafka_2.13 jar into {staging}; check {pom}")
    # Swap in whole: a libs folder never mixes the jars of two Kafka versions.
    shutil.rmtree(layout.kafka_libs, ignore_errors=True)
    staging.rename(layout.kafka_libs)
    marker.write_text(wanted + "\n")
    log.info(
        "kafka: %d jars in %s", sum(1 for _ in layout.kafka_libs.glob("*.jar")), layout.kafka_libs
    )


def rendered_configs(layout: StackLayout, settings: Settings, deploy_dir: Path) -> dict[Path, str]:
    """server.properties and log4j2.properties as the current settings make them (secure: from
    the certificates and the broker's password already in the state dir)."""
    tls = None
    if settings.stack.secure:
        pki = Pki(kafka_secure.pki_dir(layout).resolve())
        tls = kafka_secure.broker_tls(layout, pki, _broker_password(layout))
    server = render_server_properties(
        (deploy_dir / SERVER_PROPERTIES_TEMPLATE).read_text(),
        settings.stack,
        layout,
        num_partitions=settings.kafka.partitions,
        tls=tls,
    )
    log4j2 = render_log4j2_properties((deploy_dir / LOG4J2_TEMPLATE).read_text())
    return {layout.kafka_server_properties: server, layout.kafka_log4j2: log4j2}


async def ensure_formatted(
    layout: StackLayout, java: str, scram_arguments: list[str] | None = None
) -> None:
    """Format the KRaft storage once; a formatted data dir (with its topics) is kept. The secure
    stack's users come in ``scram_arguments`` (``--add-scram``: they exist from the start)."""
    if layout.kafka_formatted_marker.is_file():
        return
    cluster_id = new_cluster_id()
    log.info("kafka: formatting storage in %s (cluster id %s)", layout.kafka_data, cluster_id)
    await _run(
        [
            java,
            "-cp",
            _classpath(layout),
            f"-Dlog4j2.configurationFile={layout.kafka_log4j2}",
            STORAGE_TOOL,
            "format",
            "-t",
            cluster_id,
            "-c",
            str(layout.kafka_server_properties),
            *(scram_arguments or []),
        ],
        cwd=layout.kafka_dir,
        what="kafka.tools.StorageTool format",
    )


async def start_kafka(layout: StackLayout, settings: Settings, deploy_dir: Path) -> int:
    """Prepare (jars, configs, storage) and start the broker detached; return its pid."""
    java = java_binary()
    for folder in (layout.kafka_dir, layout.kafka_data):
        folder.mkdir(parents=True, exist_ok=True)
    await ensure_jars(layout, deploy_dir)
    scram_arguments = None
    if settings.stack.secure:
        ensure_pki(kafka_secure.pki_dir(layout))
        formatted = layout.kafka_formatted_marker.is_file()
        passwords = kafka_secure.ensure_credentials(layout, formatted=formatted)
        scram_arguments = kafka_secure.scram_format_arguments(passwords)
    for path, text in rendered_configs(layout, settings, deploy_dir).items():
        _write_private(path, text)  # the secure server.properties holds the broker's password
    await ensure_formatted(layout, java, scram_arguments)
    pid = start_detached(
        kafka_process(layout),
        kafka_argv(java, layout, settings.stack.kafka_heap),
        cwd=layout.kafka_dir,
        output=layout.kafka_log,
        env=dict(os.environ),
    )
    log.info("kafka: started (pid %d), log %s", pid, layout.kafka_log)
    return pid


def kafka_log_tail(layout: StackLayout) -> str:
    return tail(layout.kafka_log)


def _broker_password(layout: StackLayout) -> dict[str, str]:
    _, password_file = credential_paths(kafka_secure.clients_dir(layout), kafka_secure.BROKER)
    try:
        return {kafka_secure.BROKER: secret_from_file_text(password_file.read_text())}
    except OSError as exc:
        raise StackError(
            f"the secure Kafka's broker password {password_file} cannot be read: {exc.strerror}"
        ) from exc


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    os.chmod(path, 0o600)
    path.write_text(text)
