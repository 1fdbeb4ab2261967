"""Delivering subscriptions: one task per subscription reads the subscription's own Kafka topic
at its own pace, through a bounded queue, into its sink (webhook, MQTT republish), and a live
stream (SSE) per connected client. See ``task.py`` for the guarantees."""
