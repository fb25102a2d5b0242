# The Meterline server image: gateway, MQTT bridge and stream workers (docker-compose.yml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY meterline ./meterline
COPY gateway ./gateway
COPY stream_workers ./stream_workers
COPY dashboards ./dashboards
COPY meterline_cli ./meterline_cli
COPY schemas ./schemas
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin meterline \
    && mkdir -p /data && chown meterline /data

USER meterline
ENV METERLINE_HOME=/data
EXPOSE 9092
CMD ["meterline", "gateway", "--host", "0.0.0.0", "--port", "9092"]
