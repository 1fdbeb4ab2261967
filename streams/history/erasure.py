"""Erasure in the history store: a data subject's observation rows deleted (issue 10's erasure,
``cityhub.streams.privacy.erasure``, calls this when ``history.enabled``).

The rows of a subject are sealed personal observations (``data_subject`` set by the normaliser);
their values are ciphertext under the subject's shredded key already, so deleting them removes
the last trace (the device, the times) as well. Aggregates hold no personal values: the
aggregator never counts sealed observations.
"""

from __future__ import annotations

from cityhub.streams.history.connection import Connection


async def erase_subject(conn: Connection, tenant: str, data_subject: str) -> int:
    """Delete every observation row of ``data_subject`` of ``tenant`` (in every partition,
    DEFAULT included) in one transaction; return how many there were."""
    async with conn.transaction():
        cursor = await conn.execute(
            "DELETE FROM observations WHERE tenant = %s AND data_subject = %s",
            [tenant, data_subject],
        )
    return max(cursor.rowcount, 0)
