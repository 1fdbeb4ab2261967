"""Tools for developing and trying cityhub, not part of the running hub: the local
single-node stack (``stack``), the simulated city fleet (``simulator``) and ``tail``."""
