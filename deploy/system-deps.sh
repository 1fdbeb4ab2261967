#!/usr/bin/env bash
# Installs the system packages cityhub's local stack needs, from Debian, when they are missing:
# Java 17+ (runs Kafka), Maven (fetches Kafka from Maven Central), Mosquitto (the MQTT broker, and
# mosquitto_passwd, which makes password files: Debian ships both in the mosquitto package),
# openssl (the webhook sink's TLS tests make their certificates with it), PostgreSQL 15 with
# PostGIS 3 (the history store; Debian 12's own packages), a JDK (the OGC suite's shim) and
# Node.js with npm (Spectral, the NL API Design Rules linter, and the console's assets), and
# Chromium with its driver (the console's browser tests).
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
# javac: the OGC SensorThings suite's read-only run compiles a small TestNG shim.
command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
# Node.js and npm: `make lint` runs Spectral (the NL API Design Rules) from deploy/lint.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if ! { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } ||
  ! { command -v mosquitto_passwd >/dev/null 2>&1 || [ -x /usr/bin/mosquitto_passwd ]; }; then
  missing+=(mosquitto)
fi
# mosquitto_pub/_sub: the secure MQTT tests check that a foreign client gets in with --cafile.
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
pg_bin=/usr/lib/postgresql/15/bin
{ [ -x "$pg_bin/initdb" ] && [ -x "$pg_bin/postgres" ]; } || missing+=(postgresql-15)
[ -f /usr/share/postgresql/15/extension/postgis.control ] || missing+=(postgresql-15-postgis-3)
# Prometheus: promtool checks and unit-tests deploy/prometheus/rules.yml, and the integration
# test starts a Prometheus of its own against `cityhub run` (Debian's package; its service is
# not used).
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || missing+=(prometheus)
# Chromium and its driver: the operator console's browser tests drive Debian's Chromium with
# Playwright (tests/integration/test_console_browser.py); no browser is downloaded.
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing from Debian: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
