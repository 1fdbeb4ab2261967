"""faust agents: thin shells that feed Kafka records to the pure logic and write its results."""
