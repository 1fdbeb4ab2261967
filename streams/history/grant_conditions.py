"""The third branch of the history store's visibility rule in SQL: the rows a tenant sees under
its active agreements (``cityhub.streams.sharing.grants``), as the WHERE fragments of
``queries.visibility``, and which agreement each returned row was read under (for the usage
counts).

One fragment per active grant, made of fixed column names and placeholders only; every value
(the provider, the classifications, each list of the selection) travels as a parameter named
``g<n>_<what>``. No grants: no fragment (the rule is the old one, own and public rows).

A grant covers a row as ``Grant.covers`` covers an item:

- the row's tenant is the provider, its classification is covered by the offer's;
- the table is one of the offer's kinds (``observations``, ``aggregates``);
- each criterion of the selection that lists values matches: quantities, areas, device ids,
  device types (observations: the ``device_type`` column), tags (observations: the
  observation's ``tags`` in its document, any of them);
- a device-level criterion (device types, tags, device ids) leaves an area's aggregate out.

The aggregates table keeps no device type or tags: a grant that selects by either covers no
aggregate row here (the aggregates API reads windows from Kafka or history and applies the
grants with the registry's facts instead, ``cityhub.streams.aggregation.query``).

Pure: no database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from cityhub.schemas.sharing import CLASSIFICATION_RANK, ItemKind, classification_covered
from cityhub.streams.sharing.grants import Grant, ItemFacts


def covered_classifications(grant: Grant) -> list[str]:
    """The classifications the grant's offer covers, least restrictive first."""
    return [c for c in CLASSIFICATION_RANK if classification_covered(grant.classification, c)]


def grant_condition(
    grant: Grant, number: int, params: dict[str, Any], *, kind: ItemKind
) -> str | None:
    """The WHERE fragment of the rows of ``kind``'s table that ``grant`` covers (its
    parameters added to ``params``), or None when it covers none of them."""
    if kind not in grant.kinds:
        return None
    if kind is ItemKind.AGGREGATES and (grant.device_types is not None or grant.tags is not None):
        return None  # the aggregates table has neither column (module docstring)
    prefix = f"g{number}_"

    def bind(name: str, value: object) -> str:
        params[prefix + name] = value
        return f"%({prefix}{name})s"

    clauses = [
        f"tenant = {bind('provider', grant.provider)}",
        f"classification = ANY({bind('classes', covered_classifications(grant))}::text[])",
    ]
    for column, name, values in (
        ("quantity", "quantities", grant.quantities),
        ("area", "areas", grant.areas),
        ("device_id", "device_ids", grant.device_ids),
        ("device_type", "device_types", grant.device_types),
    ):
        if values is not None:
            clauses.append(f"{column} = ANY({bind(name, sorted(values))}::text[])")
    if grant.tags is not None:
        clauses.append(f"(doc -> 'tags') ?| {bind('tags', sorted(grant.tags))}::text[]")
    if kind is ItemKind.AGGREGATES and grant.device_ids is not None:
        clauses.append("group_kind = 'device'")
    return "(" + " AND ".join(clauses) + ")"


def grant_conditions(
    grants: Sequence[Grant], params: dict[str, Any], *, kind: ItemKind
) -> list[str]:
    """The fragments of every grant that covers some row of ``kind``'s table (OR them)."""
    found = []
    for number, grant in enumerate(grants):
        fragment = grant_condition(grant, number, params, kind=kind)
        if fragment is not None:
            found.append(fragment)
    return found


def read_under(
    viewer_tenant: str | None,
    grants: Sequence[Grant],
    rows: Iterable[ItemFacts],
) -> dict[str, int]:
    """How many of ``rows`` (as returned to ``viewer_tenant``) each agreement let through: a
    row of another tenant that is not ``public`` was returned under the first grant that covers
    it."""
    tally: dict[str, int] = {}
    if viewer_tenant is None or not grants:
        return tally
    for facts in rows:
        if facts.tenant is None or facts.tenant == viewer_tenant:
            continue
        if facts.classification == "public":
            continue
        for grant in grants:
            if grant.covers(facts):
                tally[grant.agreement_id] = tally.get(grant.agreement_id, 0) + 1
                break
    return tally
