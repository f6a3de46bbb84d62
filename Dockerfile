# Referral Sync: the daemon, as a non-root process on a slim Python base.
#
#   docker build -t referral-sync .
#   docker run -d --name referral-sync -p 127.0.0.1:8765:8765 \
#     -v "$PWD/my.toml:/etc/referral-sync/config.toml:ro" \
#     -v referral-sync-state:/var/lib/referral-sync \
#     referral-sync
#
# Config and state are volumes: the TOML at /etc/referral-sync/config.toml (read-only), the
# SQLite state and the Partner Center token cache under /var/lib/referral-sync (see
# config/docker.example.toml; with PostgreSQL the state lives in the database, see
# docker-compose.yml). Sign in once: docker run --rm -it ... --entrypoint referral-sync
# referral-sync login partner-center --config /etc/referral-sync/config.toml
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/referral-sync \
        --shell /usr/sbin/nologin referral-sync \
    && mkdir -p /etc/referral-sync

WORKDIR /app
# The package and what it reads beside itself (the default mappings).
COPY pyproject.toml README.md ./
COPY connector ./connector
COPY sandbox ./sandbox
COPY mappings ./mappings
COPY config ./config
COPY crm-setup ./crm-setup
RUN python -m venv /app/.venv && /app/.venv/bin/pip install -e /app
ENV PATH=/app/.venv/bin:$PATH

USER referral-sync
VOLUME ["/var/lib/referral-sync"]
EXPOSE 8765
# Liveness: the ops server answers /healthz while the process serves (readiness is /readyz).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["referral-sync", "run"]
# Inside the container the ops server must listen beyond loopback for the published port.
CMD ["--config", "/etc/referral-sync/config.toml", "--listen", "0.0.0.0:8765"]
