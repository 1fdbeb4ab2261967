"""Reading window aggregates back from ``cityhub.aggregates``: the pure query logic
(``query``), an in-memory source for tests (``memory``) and the Kafka reader (``reader``)."""
