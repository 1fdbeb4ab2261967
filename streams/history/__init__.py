"""The history store: observations and aggregates kept in PostgreSQL (``docs/history.md``).

``connection`` opens connections (search path set), ``migrate`` creates and upgrades the
tables, ``partitions`` keeps the time partitions, ``writer`` copies what Kafka carries into them.
"""
