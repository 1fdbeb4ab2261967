"""The normaliser: raw envelopes in, canonical observations out. ``normalise`` and ``dedup`` are
the pure core; ``agent`` runs it on the worker."""
