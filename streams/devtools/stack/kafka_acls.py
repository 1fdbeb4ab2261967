"""Pure: who may do what on the secure stack's Kafka, as a list of ACL grants.

Each hub component logs in as a SCRAM user of its own (``kafka_user``) and gets only what its
code does (``docs/security.md`` has the table and the reasons). Everything is denied that is not
granted: the broker runs ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``;
the broker itself and the operator's ``cityhub-admin`` are super users.

Every component may DESCRIBE cityhub's topics: each process checks at start that the topics
exist (``ensure_topics`` lists them), and a topic it cannot see it would try to create. Seeing a
topic's name and partitions reveals no record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from cityhub.schemas.settings import Settings
from cityhub.schemas.topics import STATES, Topics, changelog, health_group, open_data_group

USER_PREFIX = "cityhub-"
ADMIN_USER = "cityhub-admin"
BROKER_USER = "cityhub-broker"
"""The broker's own SCRAM user on its SASL_SSL listener (inter-broker traffic)."""
BROKER_CERTIFICATE_PRINCIPAL = "User:CN=localhost"
"""The broker as its controller listener sees it (the server certificate, mutual TLS)."""


class ResourceType(IntEnum):
    """Kafka's resource type codes (``org.apache.kafka.common.resource.ResourceType``)."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class PatternType(IntEnum):
    """Kafka's pattern type codes (``PatternType``)."""

    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    """Kafka's ACL operation codes (``AclOperation``)."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    DESCRIBE = 8


ALLOW = 3
"""``AclPermissionType.ALLOW``: every grant here allows; nothing needs a DENY."""


@dataclass(frozen=True, slots=True, order=True)
class AclGrant:
    """One ALLOW binding: ``principal`` may ``operation`` on the resource, from any host."""

    principal: str
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: Operation


def kafka_user(component: str) -> str:
    """The SCRAM user name of a component: ``cityhub-bridge``, ``cityhub-worker``…"""
    return f"{USER_PREFIX}{component}"


def super_users() -> tuple[str, ...]:
    """The principals the authorizer lets do anything: the broker (both ways it shows up) and
    the operator's admin user (topic creation, ACLs, ``tail``)."""
    return (BROKER_CERTIFICATE_PRINCIPAL, f"User:{BROKER_USER}", f"User:{ADMIN_USER}")


def component_grants(settings: Settings) -> dict[str, list[AclGrant]]:
    """The grants of each component (``bridge``, ``worker``, ``delivery``, ``api``,
    ``history``), from the topic prefix and group names in ``settings``."""
    topics = Topics.for_prefix(settings.kafka.topic_prefix)
    subscription_topics = f"{settings.kafka.topic_prefix}.sub."
    changelogs = [changelog(settings.worker.app_id, state) for state in STATES]
    privacy_views = [topics.processing_activities, topics.consents, topics.subject_keys]
    sharing_views = [topics.offers, topics.agreements]
    table: dict[str, list[tuple[ResourceType, str, PatternType, Operation]]] = {
        # Writes what it receives, and what it refuses; reads nothing.
        "bridge": [
            *_topics(Operation.WRITE, topics.raw, topics.deadletter),
        ],
        # The normaliser reads raw, the device aggregator the observations, the area one its
        # repartition topic, all in the worker group; they write the results and each
        # subscription's topic (which routing creates), keep their state in their changelogs,
        # and read the registry, the subscriptions' filters (records without their secrets:
        # never the subscription-secrets topic) and the privacy views.
        "worker": [
            *_topics(
                Operation.READ,
                topics.raw,
                topics.observations,
                topics.area_observations,
                topics.open_data_points,
                *changelogs,
                # The health stage counts each device's dead letters.
                topics.deadletter,
            ),
            *_topics(
                Operation.WRITE,
                topics.device_health,
                topics.observations,
                topics.aggregates,
                topics.area_observations,
                topics.open_data_points,
                topics.open_data,
                topics.agreement_usage,
                topics.deadletter,
                *changelogs,
            ),
            *_topics(
                Operation.READ,
                topics.registry,
                topics.subscriptions,
                *privacy_views,
                *sharing_views,
            ),
            (ResourceType.TOPIC, subscription_topics, PatternType.PREFIXED, Operation.WRITE),
            (ResourceType.TOPIC, subscription_topics, PatternType.PREFIXED, Operation.CREATE),
            (ResourceType.GROUP, settings.worker.app_id, PatternType.LITERAL, Operation.READ),
            # The open-data publisher's agents, in a group of their own (open_data_group).
            (
                ResourceType.GROUP,
                open_data_group(settings.worker.app_id),
                PatternType.LITERAL,
                Operation.READ,
            ),
            # The health stage's agents, in a group of their own (health_group).
            (
                ResourceType.GROUP,
                health_group(settings.worker.app_id),
                PatternType.LITERAL,
                Operation.READ,
            ),
        ],
        # Reads each subscription's topic in a group of its own and signs what it sends: the
        # one component besides the API that reads the subscriptions' secrets.
        "delivery": [
            (ResourceType.TOPIC, subscription_topics, PatternType.PREFIXED, Operation.READ),
            (
                ResourceType.GROUP,
                f"{settings.delivery.group_prefix}.",
                PatternType.PREFIXED,
                Operation.READ,
            ),
            *_topics(
                Operation.READ,
                topics.registry,
                topics.subscriptions,
                topics.subscription_secrets,
                *privacy_views,
                *sharing_views,
            ),
            *_topics(
                Operation.WRITE, topics.processing_log, topics.deadletter, topics.agreement_usage
            ),
            # Each subscription's status, for the console (the API reads it).
            *_topics(Operation.WRITE, topics.subscription_status),
        ],
        # Manages the registry, the subscriptions (their secrets, and their topics) and the
        # privacy records;
        # serves aggregates, a subject's observations, live streams (SSE) and the log.
        "api": [
            *_topics(
                Operation.READ,
                topics.registry,
                topics.subscriptions,
                topics.subscription_secrets,
                *privacy_views,
                topics.resident_tokens,
                topics.processing_log,
                topics.aggregates,
                topics.observations,
                *sharing_views,
                topics.agreement_usage,
                topics.open_data,
                topics.data_requests,
                topics.device_health,
                # The console: subscriptions' statuses, and the dead letters of the tenant's
                # devices (a bounded view, docs/console.md).
                topics.subscription_status,
                topics.deadletter,
                # The console's sign-outs, which every API process follows whole.
                topics.console_signouts,
            ),
            *_topics(
                Operation.WRITE,
                topics.registry,
                topics.subscriptions,
                topics.subscription_secrets,
                *privacy_views,
                topics.resident_tokens,
                topics.processing_log,
                *sharing_views,
                topics.agreement_usage,
                topics.data_requests,
                topics.console_signouts,
            ),
            (ResourceType.TOPIC, subscription_topics, PatternType.PREFIXED, Operation.READ),
            (ResourceType.TOPIC, subscription_topics, PatternType.PREFIXED, Operation.CREATE),
            (ResourceType.TOPIC, subscription_topics, PatternType.PREFIXED, Operation.DELETE),
        ],
        # Stores observations and aggregates in PostgreSQL; dead-letters what it cannot.
        "history": [
            *_topics(Operation.READ, topics.observations, topics.aggregates),
            *_topics(Operation.WRITE, topics.deadletter),
            (
                ResourceType.GROUP,
                f"{settings.worker.app_id}-history",
                PatternType.LITERAL,
                Operation.READ,
            ),
        ],
    }
    visible = [
        (ResourceType.TOPIC, f"{settings.kafka.topic_prefix}.", PatternType.PREFIXED, op)
        for op in (Operation.DESCRIBE,)
    ] + [(ResourceType.TOPIC, name, PatternType.LITERAL, Operation.DESCRIBE) for name in changelogs]
    return {
        component: sorted(
            {
                AclGrant(f"User:{kafka_user(component)}", rtype, name, pattern, operation)
                for rtype, name, pattern, operation in [*rows, *visible]
            }
        )
        for component, rows in table.items()
    }


def _topics(
    operation: Operation, *names: str
) -> list[tuple[ResourceType, str, PatternType, Operation]]:
    return [(ResourceType.TOPIC, name, PatternType.LITERAL, operation) for name in names]
