# The detector as a service: `docker run -v ./alerts.yaml:/etc/detector/alerts.yaml ...`
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 detector \
    && mkdir -p /etc/detector /var/lib/detector \
    && chown detector:detector /var/lib/detector

WORKDIR /opt/detector
COPY pyproject.toml README.md ./
COPY detector ./detector
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER detector
WORKDIR /var/lib/detector
# alerts.yaml is mounted at /etc/detector; alert state and the outbox live in /var/lib/detector
# unless DETECTOR_STATE_URL points at a shared database.
VOLUME ["/var/lib/detector"]
ENV DETECTOR_STATE_URL=sqlite:////var/lib/detector/detector-state.db \
    PYTHONUNBUFFERED=1
STOPSIGNAL SIGTERM
CMD ["detector", "run", "--config", "/etc/detector/alerts.yaml"]
