# One image for every ApexTrader process: `apex agent NAME --track T` (each agent) and `apex operator`.
# Build: `make image` (needs a Docker engine). Runs as uid 10001 with a read-only root filesystem:
# nothing is written outside /tmp (mount an emptyDir there), bytecode is compiled at build time.

# ---- build: install the package and its dependencies into a self-contained venv --------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/apex
# Dependencies first (cached while only the source changes): pyproject's metadata is all they need.
COPY pyproject.toml README.md ./
COPY agents ./agents
COPY operator ./operator
RUN /opt/apex/bin/pip install --no-cache-dir . \
 && /opt/apex/bin/python -m compileall -q /opt/apex/lib \
 && /opt/apex/bin/apex --version

# ---- runtime: the venv only, no compilers, no pip cache, non-root ----------------------------------
FROM python:3.11-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="apextrader" \
      org.opencontainers.image.description="ApexTrader agents and operator (apex agent NAME | apex operator)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/apex/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    APEX_HTTP_PORT=8080 \
    APEX_HEALTH_PATH=/health
RUN groupadd --system --gid 10001 apex \
 && useradd --system --uid 10001 --gid apex --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin apex
COPY --from=build --chown=root:root /opt/apex /opt/apex
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# Agents serve /health on APEX_HTTP_PORT; the operator's liveness is /healthz (set APEX_HEALTH_PATH).
# Kubernetes ignores HEALTHCHECK and uses the probes the chart/operator render; this is for docker run.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s%s' % (os.environ['APEX_HTTP_PORT'], os.environ['APEX_HEALTH_PATH']), timeout=2)"]
ENTRYPOINT ["apex"]
CMD ["--help"]
