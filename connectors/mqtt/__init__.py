"""MQTT ingress: a bridge from topic filters on an MQTT broker to ``cityhub.raw`` on Kafka."""
