"""Data alliances: offers, agreements and what they let a tenant see (issue 13)."""
