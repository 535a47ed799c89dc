# The detector as a service. Build: docker build -t payment-failure-detector .
# Volumes: /etc/detector (alerts.yaml, read-only) and /var/lib/detector (SQLite state, unless
# DETECTOR_STATE_URL points at a shared database, as it must for several replicas).
# Reproducible builds pin the base image by digest. Resolve the tag's digest with
#   docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'
# (or: skopeo inspect --format '{{.Digest}}' docker://docker.io/library/python:3.11-slim)
# and build with --build-arg BASE_IMAGE=python:3.11-slim@sha256:<digest>, or write it here.
# The Python minor version must stay the one requirements.lock was compiled with (3.11).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

RUN groupadd --gid 10001 detector \
    && useradd --create-home --uid 10001 --gid 10001 detector \
    && mkdir -p /etc/detector /var/lib/detector \
    && chown detector:detector /var/lib/detector

WORKDIR /opt/detector
# The runtime dependencies and the build backend exactly as locked, each file checked against
# its hash; then the detector itself, built without fetching anything else.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY detector ./detector
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && rm -rf /root/.cache

# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/detector
VOLUME ["/etc/detector", "/var/lib/detector"]
ENV DETECTOR_STATE_URL=sqlite:////var/lib/detector/detector-state.db \
    PYTHONUNBUFFERED=1
# The HTTP endpoint; set DETECTOR_LISTEN=0.0.0.0:8080 (read by the shipped alerts.yaml) to reach it
# from outside the container (the default, 127.0.0.1:8080, is enough for the health check below).
EXPOSE 8080
# /healthz is 200 for the leader and for healthy followers, 503 once ticks stop succeeding.
# The slim image has no curl: Python's urllib does the request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
CMD ["detector", "--log-format", "json", "run", "--config", "/etc/detector/alerts.yaml"]
