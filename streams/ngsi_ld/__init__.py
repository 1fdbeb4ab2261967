"""The NGSI-LD read API (``/ngsi-ld/v1``) of the hub's API process: devices as Smart Data
Models entities, their current values and their history from the history store."""
