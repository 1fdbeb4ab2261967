"""The worker's runtime around the pure agents: input intake, acknowledgements and commits."""
