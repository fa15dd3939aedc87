# migration-watch container image.
# Config is read from /etc/migration-watch/migration-watch.yaml (mount it, or a directory,
# there); secrets via *_file keys, e.g. database.dsn_file: /run/secrets/dsn.
FROM python:3.11-slim AS build
# gcc builds the log classifier's C chunk path (migration_watch.logs._fastscan).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY daemon ./daemon
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/migration-watch --create-home migration-watch \
 && mkdir -p /etc/migration-watch \
 && chown migration-watch /var/lib/migration-watch
COPY --from=build /opt/venv /opt/venv
RUN /opt/venv/bin/python -c "import migration_watch.logs._fastscan"
COPY config/migration-watch.yaml /etc/migration-watch/migration-watch.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MIGRATION_WATCH_LISTEN=0.0.0.0:9719
USER migration-watch
WORKDIR /var/lib/migration-watch
EXPOSE 9719
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9719/health/live', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["migration-watch"]
CMD ["run", "--config", "/etc/migration-watch/migration-watch.yaml"]
