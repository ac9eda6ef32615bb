# dynamodb-streams-consumer: `consumer run` (Python 3.11) supervising the KCL 3 JVM (Java 17), under tini.
#
#   docker build -t dynamodb-streams-consumer .
#   docker run --read-only --tmpfs /tmp -v "$PWD/consumer.yaml:/etc/consumer/consumer.yaml:ro" dynamodb-streams-consumer
#
# BASE_IMAGE: Debian bookworm with Python 3.11 as `python3`. Every stage starts from it, so the virtualenv built in
# one stage runs unchanged in the last. In production pin it by digest: python:3.11-slim-bookworm@sha256:...
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- the engine's jars: the pinned KCL / Streams adapter closure (consumer/kcl/pom.xml) and the bridge ---------
FROM ${BASE_IMAGE} AS jars
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian's JDK and Maven follow the release's security updates; pinning their versions would break the build at each.
# (The man directory: openjdk's post-install step fails on slim images without it.)
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless maven \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY consumer/kcl/pom.xml ./
RUN mvn -B -q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=/build/jars
COPY consumer/kcl/StreamsBridge.java ./
RUN javac -Xlint:deprecation -d classes -cp '/build/jars/*' StreamsBridge.java \
 && jar cf jars/streams-bridge.jar -C classes .

# --- the Python package in a virtualenv (no dev extras) --------------------------------------------------------
FROM ${BASE_IMAGE} AS venv
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
RUN python3 -m venv /opt/venv
# The dependencies first, as their own layer: it is rebuilt only when pyproject.toml changes. amazon-kclpy builds
# from source and downloads its own copy of the KCL jars from Maven Central; the engine runs on the jars above, so
# that copy is deleted.
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --requirement requirements.txt \
 && rm -rf /opt/venv/lib/python3*/site-packages/amazon_kclpy/jars
COPY README.md ./
COPY consumer ./consumer
# Non-editable. The package looks for the jars beside itself (consumer/kcl/jars): a link to /opt/consumer/jars,
# which the last stage fills from the jars stage, keeps the two in separate layers. (-I: the installed package,
# not the source tree in the working directory.)
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps . \
 && ln -s /opt/consumer/jars \
      "$(/opt/venv/bin/python -I -c 'from consumer.supervisor import DEFAULT_JARS_DIR; print(DEFAULT_JARS_DIR)')"

# --- runtime -----------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
LABEL org.opencontainers.image.title="dynamodb-streams-consumer" \
      org.opencontainers.image.description="DynamoDB Streams to notifications with the KCL 3, beside your Lambda functions" \
      org.opencontainers.image.licenses="Apache-2.0"
# tini is PID 1: it passes SIGTERM/SIGINT to `consumer run` alone (not to the process group), which forwards them
# to the JVM, which asks each record processor to checkpoint and stop. Same reason as above for unpinned versions.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 consumer \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin consumer \
 && mkdir -p /etc/consumer
COPY --from=jars /build/jars /opt/consumer/jars
COPY --from=venv /opt/venv /opt/venv
# Read-only root filesystem: the supervisor's work dir (rendered KCL properties, the Prometheus multiprocess
# files) and the JVM's perf data go to $TMPDIR; mount a tmpfs / emptyDir there. HOME points there too.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A volume, so that a read-only container still gets a writable /tmp where nothing is mounted there (docker run
# --read-only), and so that ECS on Fargate gives the bind mount /tmp's mode (1777) rather than root's 0755.
VOLUME ["/tmp"]
# Handler sinks given as relative paths are found beside the mounted configuration.
WORKDIR /etc/consumer
USER 10001:10001
EXPOSE 9400
# Used by Docker and compose only: Kubernetes and ECS run the probes of their own manifests (deploy/).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CONSUMER_HTTP__PORT', '9400'), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "consumer"]
CMD ["run", "--config", "/etc/consumer/consumer.yaml"]
