"""Subscriptions: which observations and aggregates a subscription receives (pure filters and the
tenant rule); the router and delivery tasks build on them."""
