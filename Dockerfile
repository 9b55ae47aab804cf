# 码上通 (mst): one image for every process — `mst serve` (the default), `mst worker`, and the
# one-shot commands (`mst migrate`, `mst backup`, `mst import-cases`, …): compose.yaml runs it
# so. Dependencies are the exact versions pyproject.toml pins.
#   docker build -t mst .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pg_dump / pg_restore for `mst backup` and `mst restore` (Debian's client, 15 or newer: its
# major version must be at least the server's; compose.yaml's server is PostgreSQL 15).
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

# A user of its own, no login, no root: the data dir (keys, SQLite when used) is its home.
RUN groupadd --system --gid 10001 mst \
    && useradd --system --uid 10001 --gid mst --home-dir /var/lib/mst --create-home \
        --shell /usr/sbin/nologin mst

WORKDIR /opt/mst
# What `pip install .` needs (pyproject's packages and package data), nothing else.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY qr ./qr
COPY storage ./storage
RUN pip install --no-compile . \
    && rm -rf /opt/mst/build /opt/mst/*.egg-info \
    && mst --help > /dev/null

USER mst
WORKDIR /var/lib/mst
# JSON log lines for `docker logs` and collectors; keys and the SQLite default in the volume.
ENV MST_DATA_DIR=/var/lib/mst \
    DATABASE_URL=sqlite+aiosqlite:////var/lib/mst/mst.db \
    LOG_FORMAT=json
VOLUME ["/var/lib/mst"]
EXPOSE 8080

# /healthz is 200 when the database, Redis and the background jobs are well (503 names
# what is not); slim has no curl, so Python asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["mst"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
