# syntax=docker/dockerfile:1
# cityhub's image for those who build with Docker or BuildKit (docs/image.md):
#   docker build -t cityhub:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
# deploy/image/build.sh makes the same image without Docker (mmdebstrap + umoci);
# tests/unit/test_image_definition.py checks that the two agree on the user, the entrypoint,
# the working directory, the ports, the environment, the labels, the python and the lock.
# Both use Debian 12's own python3.11. Pin the base image by digest where you build
# (debian:bookworm-slim@sha256:...): this project's machines cannot reach a registry to read it.
ARG DEBIAN_IMAGE=debian:bookworm-slim

# --- build: the wheel of cityhub and a venv with exactly the locked runtime dependencies --------
FROM ${DEBIAN_IMAGE} AS build
# DL3008 (pin apt versions): Debian replaces a stable package's version at each point release and
# security update, and the old one leaves the mirror; the base image's digest pins the set.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY deploy/image/requirements-build.lock deploy/image/requirements-runtime.lock deploy/image/
# Every file checked against its hash; wheels only (no compiler in either stage).
RUN python3.11 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes \
        -r deploy/image/requirements-build.lock \
    && python3.11 -m venv /opt/cityhub \
    && /opt/cityhub/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: \
        -r deploy/image/requirements-runtime.lock
COPY pyproject.toml README.md LICENSE ./
COPY schemas schemas
COPY connectors connectors
# With the console's vendor files (htmx, Leaflet from the npm registry, not tracked): run
# `make console-assets` before `docker build`.
COPY streams streams
# cityhub without dependencies (they are all in already), then no pip or setuptools in the venv.
RUN /opt/build/bin/python -m build --wheel --no-isolation --outdir /wheels . \
    && /opt/cityhub/bin/pip install --no-cache-dir --no-deps /wheels/cityhub-*.whl \
    && /opt/cityhub/bin/pip uninstall -y pip setuptools

# --- the image: Debian's python3.11, the CA certificates, the venv, a user of its own -----------
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 cityhub \
    && useradd --uid 10001 --gid 10001 --home-dir /var/lib/cityhub --create-home \
        --shell /usr/sbin/nologin cityhub
COPY --from=build /opt/cityhub /opt/cityhub
# The API listens on every address of the container (its network namespace is the boundary);
# the management port too, so that probes and Prometheus reach it: restrict it with a
# NetworkPolicy (deploy/helm), never publish it.
ENV PATH=/opt/cityhub/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    CITYHUB_HTTP__HOST=0.0.0.0 \
    CITYHUB_MANAGEMENT__HOST=0.0.0.0
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=
LABEL org.opencontainers.image.title=cityhub \
      org.opencontainers.image.description="Event-streaming integration hub for a city's sensors" \
      org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.revision=${REVISION} \
      org.opencontainers.image.created=${CREATED} \
      org.opencontainers.image.licenses=Apache-2.0 \
      org.opencontainers.image.source=${SOURCE}
USER 10001:10001
WORKDIR /var/lib/cityhub
EXPOSE 8080/tcp 9464/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["cityhub"]
CMD ["--help"]
