"""Window aggregates: the pure event-time windows (``windows``), the agent that runs them on the
worker (``agent``), and the query side that reads them back from ``cityhub.aggregates``
(``query``, its Kafka ``reader`` and an in-memory source for tests, ``memory``)."""
