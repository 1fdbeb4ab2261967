"""Observability assets made from code: the Grafana dashboards in ``deploy/grafana/``."""
