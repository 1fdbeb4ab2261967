"""The operator HTTP API: the registry's operations over HTTP, with its OpenAPI document."""
