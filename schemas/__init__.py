"""Canonical models of cityhub: settings, errors, the raw envelope, observations, dead letters.

Pure: imports nothing of cityhub's other packages and does no I/O beyond reading its own
JSON Schema files.
"""
