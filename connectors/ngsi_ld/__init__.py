"""NGSI-LD (ETSI GS CIM 009) views of cityhub's devices as FIWARE Smart Data Models entities.

``models``: which Smart Data Model a device type is shown as, and how each quantity becomes an
attribute (name, UN/CEFACT ``unitCode``, value). ``context``: the ``@context`` cityhub serves.
``entities``: entity ids and the normalized and temporal representations. ``query``: the
query language subset the API takes. ``notification``: the body of a notification. All pure.
"""
