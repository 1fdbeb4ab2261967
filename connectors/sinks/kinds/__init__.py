"""The delivery kinds cityhub ships, one file each: ``kafka`` (the subscription's own topic),
``webhook`` (signed HTTP POSTs), ``sse`` (a live stream from the API) and ``mqtt`` (republished on
cityhub's broker). Each is a :class:`~cityhub.connectors.sinks.base.DeliverySink` like a
plugin's; ``cityhub.connectors.sinks`` registers them."""
