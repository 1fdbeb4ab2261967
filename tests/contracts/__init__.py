"""Contract suites: abstract test classes that every implementation of an interface must pass,
each run by a test module per backend that gives it its fixture (the in-memory one under
``tests/unit``, the real one under ``tests/integration``)."""
