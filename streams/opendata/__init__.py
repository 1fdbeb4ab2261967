"""Open data (issue 13): privacy-safe published windows, their distributions, the catalogue
and the public's data requests."""
