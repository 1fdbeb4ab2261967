"""The device registry: tenants, device types, devices and API keys, kept in a compacted Kafka
topic and materialised in memory by every API and worker instance."""
