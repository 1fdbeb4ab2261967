"""The operator console: server-rendered pages (jinja2, autoescaped) with htmx, served by the
API process under ``/console/`` (``docs/console.md``)."""
