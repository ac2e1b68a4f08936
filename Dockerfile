# syncd container image: `docker run ... syncd` runs the daemon; any other command works too
# (`docker run --rm -it IMAGE status`). State lives on the /var/lib/syncd volume (SQLite by
# default); point SYNCD_DATABASE__URL at PostgreSQL to run several containers side by side.

# --- builder: turn the source tree into a wheel (no build tools reach the final image) ---
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY syncd ./syncd
COPY migrations ./migrations
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- final: the wheel and its dependencies in a virtual environment, run as a non-root user ---
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/syncd \
    PATH=/opt/syncd/bin:$PATH \
    SYNCD_DATABASE__URL=sqlite+aiosqlite:////var/lib/syncd/syncd.db
COPY --from=builder /wheels /tmp/wheels
RUN python -m venv /opt/syncd \
    && /opt/syncd/bin/pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 syncd \
    && useradd --system --uid 10001 --gid syncd --home-dir /var/lib/syncd \
       --no-create-home --shell /usr/sbin/nologin syncd \
    && mkdir -p /var/lib/syncd \
    && chown syncd:syncd /var/lib/syncd \
    && chmod 0700 /var/lib/syncd
WORKDIR /var/lib/syncd
VOLUME /var/lib/syncd
USER 10001:10001
# SIGTERM drains in-flight items within sync.shutdown_grace_s (30 s by default): give the
# container at least that (`docker stop --time 45`, Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
# Healthy: config valid, database reachable and migrated, a `syncd run` heartbeat is fresh.
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 CMD ["syncd", "check"]
ENTRYPOINT ["syncd"]
CMD ["run"]
