"""Device health (issue 14): the health stage's pure states and agents, the API's view of the
``<prefix>.device-health`` topic and its queries (docs/health.md)."""
