"""Creates cityhub's Kafka topics before anything uses them.

A broker can create topics on first use, but a consumer that subscribes in the same moment may
miss a topic that is still being created (seen on a fresh Kafka 4.4: "Ignoring missing topic" and no
assignment). Creating them first, with their partitions and configs, avoids that and makes the
topic layout explicit. Existing topics are left as they are.

Every cityhub producer writes with ``acks=all``; on a replicated topic that waits for the
replicas in sync, which without ``min.insync.replicas`` may be the leader alone. So each topic
cityhub creates with replicas gets ``min.insync.replicas`` (``durability_config``): here, for
subscriptions' topics (``subscriptions.topics``) and for the worker's changelogs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass

from aiokafka.admin import NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from cityhub.connectors.kafka_clients import kafka_admin, login_refusal
from cityhub.schemas.console_settings import MAX_SESSION_SECONDS
from cityhub.schemas.errors import ConfigurationError, StackError
from cityhub.schemas.settings import KafkaSettings, Settings
from cityhub.schemas.topics import STATES, Topics, changelog

log = logging.getLogger("cityhub.topics")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def durability_config(
    kafka: KafkaSettings, replication_factor: int | None = None
) -> dict[str, str]:
    """The config that makes ``acks=all`` wait for enough replicas, for a topic of
    ``replication_factor`` replicas (default ``kafka.replication_factor``): its
    ``min.insync.replicas`` (``KafkaSettings.topic_min_insync_replicas``), or nothing when the
    broker's default applies (an unreplicated topic, no value configured)."""
    replicas = kafka.topic_min_insync_replicas(replication_factor)
    return {} if replicas is None else {"min.insync.replicas": str(replicas)}


HOUR_MS = 3600 * 1000
CHANGELOG_SEGMENT_MS = 10 * 60 * 1000
"""How long a changelog's active segment stays open (compaction never touches it)."""
CONSOLE_SIGNOUTS_RETENTION_MS = MAX_SESSION_SECONDS * 1000 + 24 * HOUR_MS
"""How long the console's sign-out topic keeps a record: the longest session a setting allows
(a session ends at most that long after its sign-out) and a day of margin for the clocks."""


def clear_payloads(retention_hours: int) -> dict[str, str]:
    """The config of a topic that holds payloads in clear (raw, dead letters): kept
    ``retention_hours``, in segments of at most an hour (Kafka deletes only closed segments, so
    the segment's age adds to the retention), with the broker's append time as the records'
    time (a producer's clock ahead cannot keep a segment longer)."""
    return {
        "retention.ms": str(retention_hours * HOUR_MS),
        "segment.ms": str(HOUR_MS),
        "message.timestamp.type": "LogAppendTime",
    }


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics cityhub owns, with their partitions and configs."""
    topics = Topics.for_prefix(settings.kafka.topic_prefix)
    n = settings.kafka.partitions
    max_bytes = str(settings.kafka.max_message_bytes + 64 * 1024)
    durability = durability_config(settings.kafka)
    log_config = {"cleanup.policy": "delete", "max.message.bytes": max_bytes, **durability}
    compact_config = {
        **durability,
        "cleanup.policy": "compact",
        "max.message.bytes": max_bytes,
        "min.cleanable.dirty.ratio": "0.1",
        "segment.ms": str(3600 * 1000),
        "delete.retention.ms": str(24 * 3600 * 1000),
    }
    return [
        # Payloads in clear, personal ones too (the normaliser seals them): kept briefly, in
        # hourly segments stamped by the broker, so that retention bounds the exposure whatever
        # the producers' clocks say (docs/privacy.md, "Erasure").
        TopicSpec(
            topics.raw, n, {**log_config, **clear_payloads(settings.kafka.raw_retention_hours)}
        ),
        TopicSpec(
            topics.observations, n, {**log_config, "retention.ms": str(30 * 24 * 3600 * 1000)}
        ),
        TopicSpec(
            topics.deadletter,
            n,
            {**log_config, **clear_payloads(settings.kafka.deadletter_retention_hours)},
        ),
        TopicSpec(
            topics.aggregates, n, {**log_config, "retention.ms": str(365 * 24 * 3600 * 1000)}
        ),
        # Internal and replayable from cityhub.observations: a short retention is enough.
        TopicSpec(
            topics.area_observations, n, {**log_config, "retention.ms": str(24 * 3600 * 1000)}
        ),
        # One partition: the registry is small and every instance reads all of it, in order.
        # Compaction keeps the last record per key; a low dirty ratio and hourly segments make it
        # actually run (the defaults, 0.5 and 7 days, would leave a busy registry uncompacted),
        # and tombstones stay a day so that an instance that was away still sees the delete.
        TopicSpec(topics.registry, 1, compact_config),
        # The subscriptions, kept the same way (every API instance and delivery task reads all).
        # Their secrets apart, readable by the API and the delivery only: a replaced or deleted
        # secret goes at the next compaction, within the hour whatever the dirty ratio. Records
        # written before the secrets moved out held them inline: the same bound on the
        # subscriptions topic lets compaction drop those once the API rewrote them.
        TopicSpec(
            topics.subscriptions, 1, {**compact_config, "max.compaction.lag.ms": str(HOUR_MS)}
        ),
        TopicSpec(
            topics.subscription_secrets,
            1,
            {**compact_config, "max.compaction.lag.ms": str(HOUR_MS)},
        ),
        # The register of processing activities: public, small, every API instance reads all.
        TopicSpec(topics.processing_activities, 1, compact_config),
        # Consents, data subjects' keys and residents' tokens: small, every process that checks
        # purposes (workers, delivery, API) reads all of them.
        TopicSpec(topics.consents, 1, compact_config),
        # A shredded key's wrapped bytes go at the next compaction; without a bound on the lag,
        # a big topic's dirty ratio could stay under the threshold and keep them for months.
        TopicSpec(
            topics.subject_keys, 1, {**compact_config, "max.compaction.lag.ms": str(HOUR_MS)}
        ),
        TopicSpec(topics.resident_tokens, 1, compact_config),
        # The processing log: append-only accountability, kept long (years; see docs/privacy.md).
        TopicSpec(
            topics.processing_log,
            n,
            {**log_config, "retention.ms": str(settings.privacy.processing_log_retention_ms)},
        ),
        # Data alliances (docs/sharing.md): offers, agreements and the uses counted under them;
        # small, read whole by every process that decides what a tenant sees.
        TopicSpec(topics.offers, 1, compact_config),
        TopicSpec(topics.agreements, 1, compact_config),
        TopicSpec(topics.agreement_usage, 1, compact_config),
        # Open data (docs/open-data.md): the internal repartition of the observations that feed
        # open datasets (replayable: kept a day), the published windows (compacted: each is
        # written once, and the open API rebuilds its recent days from them), the public's data
        # requests.
        TopicSpec(
            topics.open_data_points, n, {**log_config, "retention.ms": str(24 * 3600 * 1000)}
        ),
        TopicSpec(topics.open_data, 1, compact_config),
        # A data request's contact (personal data) is erased by writing the record again
        # without it: the earlier record goes at the next compaction, within the hour.
        TopicSpec(
            topics.data_requests, 1, {**compact_config, "max.compaction.lag.ms": str(HOUR_MS)}
        ),
        # Each subscription's delivery status, written every few seconds by the delivery
        # processes and read whole by the API (the console's subscriptions page).
        TopicSpec(topics.subscription_status, 1, compact_config),
        # Each device's health (docs/health.md): one record per device (and per dead-letter
        # partition), rewritten at most once a minute; one partition, read whole by the API.
        TopicSpec(topics.device_health, 1, compact_config),
        # The console's sign-outs (docs/console.md): one record per signed-out session, needed
        # only until that session would have expired; deleted after, so the topic that every
        # API process reads whole stays bounded.
        TopicSpec(
            topics.console_signouts,
            1,
            {
                **compact_config,
                "cleanup.policy": "compact,delete",
                "retention.ms": str(CONSOLE_SIGNOUTS_RETENTION_MS),
            },
        ),
        # The agents' states, one partition per input partition (the input topics have n). A
        # partition's new owner reads its changelog partition back, the uncompacted active
        # segment whole: 10-minute segments keep that to minutes of updates, not an hour's
        # (some 300 000 records at 200 uplinks/s; tens of seconds to restore).
        *(
            TopicSpec(
                changelog(settings.worker.app_id, state),
                n,
                {**compact_config, "segment.ms": str(CHANGELOG_SEGMENT_MS)},
            )
            for state in STATES
        ),
    ]


async def ensure_topics(
    settings: Settings, *, timeout: float = 60.0, only: Collection[str] | None = None
) -> list[str]:
    """Create the missing topics (those named in ``only``, if given); return the names created.
    Raises StackError if Kafka cannot be reached within ``timeout`` seconds."""
    admin = kafka_admin(settings.kafka, client_id="cityhub-admin")
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError as exc:
            # A refused login or certificate is not worth retrying until the deadline.
            refusal = await login_refusal(settings.kafka)
            if refusal is not None:
                await admin.close()
                raise ConfigurationError(refusal) from exc
            if asyncio.get_running_loop().time() > deadline:
                raise StackError(
                    f"Kafka at {settings.kafka.bootstrap_servers} is not reachable ({exc}); "
                    "is the stack up? Try `cityhub stack up`."
                ) from exc
            await asyncio.sleep(1.0)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            s
            for s in topic_specs(settings)
            if s.name not in existing and (only is None or s.name in only)
        ]
        created: list[str] = []
        if wanted:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=settings.kafka.replication_factor,
                        topic_configs=spec.config,
                    )
                    for spec in wanted
                ]
            )
            # The admin client reports per-topic failures in the response, not as exceptions.
            for name, code, *rest in response.topic_errors:
                if code == 0:
                    created.append(name)
                elif code == TopicAuthorizationFailedError.errno:
                    raise StackError(
                        f"this Kafka user (kafka.sasl_username={settings.kafka.sasl_username}) "
                        f"may not create topic {name!r}: create cityhub's topics as the admin "
                        "first (`cityhub stack up --secure` does; on a managed cluster, the "
                        "operator or Strimzi's KafkaTopic resources)"
                    )
                elif code != TopicAlreadyExistsError.errno:
                    message = rest[0] if rest else ""
                    raise StackError(
                        f"Kafka refused to create topic {name!r}: error {code} {message}"
                    )
        if created:
            log.info("created topics %s", ", ".join(created))
        return created
    finally:
        await admin.close()
