"""The OGC SensorThings API (Part 1: Sensing, version 1.1) read service under ``/sta/v1.1``:
``docs/sensorthings.md`` says what is mapped how."""
