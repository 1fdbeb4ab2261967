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
    DEFAULT included) in one transaction; return how many there were.

    No row of the subject received before this erasure is written after it: the transaction
    first takes the table in SHARE mode, which waits for the writer's batches under way (they
    hold ROW EXCLUSIVE) and holds new ones back until it commits, so the DELETE sees every row
    written before it; and it notes the subject in ``erased_subjects``, so the writer's later
    batches skip the subject's rows received before now (``batch_store``: still in Kafka
    behind a writer that lags)."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE observations IN SHARE MODE")
        await conn.execute(
            "INSERT INTO erased_subjects (tenant, data_subject, erased_at) VALUES (%s, %s, now())"
            " ON CONFLICT (tenant, data_subject) DO UPDATE SET erased_at = excluded.erased_at",
            [tenant, data_subject],
        )
        cursor = await conn.execute(
            "DELETE FROM observations WHERE tenant = %s AND data_subject = %s",
            [tenant, data_subject],
        )
    return max(cursor.rowcount, 0)
