"""Every benchmark in one go (``make bench``), each printing its own figures and its ratio against a
baseline measured in the same run: the normaliser and the subscription routing (pure CPU), the MQTT
receive path, the bridge, the registry and one worker over a backlog (on the local stack), and the
end-to-end latencies to a Kafka consumer and to a webhook subscriber, a new subscription's
first delivery, and the history writer into PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "bench.normaliser",
    "bench.routing",
    "bench.mqtt_receive",
    "bench.bridge",
    "bench.registry",
    "bench.worker",
    "bench.pipeline_latency",
    "bench.delivery_latency",
    "bench.subscription_latency",
    "bench.history_write",
)


def main() -> int:
    for module in BENCHMARKS:
        print(f"\n=== {module}", flush=True)
        result = subprocess.run([sys.executable, "-m", module], check=False)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
