# syntax=docker/dockerfile:1
# crm-health: `docker build -t crm-health .` (docs/operations.md; CI has no Docker engine and
# does not build it). The build context is filtered by .dockerignore.

# Build stage: the package and its dependencies in a virtual environment, compiled where needed.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY connector ./connector
COPY signals ./signals
COPY webhooks ./webhooks
RUN pip install --no-cache-dir --upgrade pip && pip install --no-cache-dir .

# Runtime stage: only the virtual environment (no compilers, no sources), run as an
# unprivileged user.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 crmhealth
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CRM_HEALTH_DATABASE_URL=sqlite+aiosqlite:////data/crm_health.db
RUN mkdir /data && chown crmhealth /data
VOLUME /data
USER crmhealth
WORKDIR /home/crmhealth
EXPOSE 8000
# Liveness, not readiness: /healthz answers while the process runs. /readyz (database reachable,
# schema current) is for whatever routes traffic: a load balancer, Compose's depends_on, a
# Kubernetes readiness probe. Were this check on /readyz, a database outage would turn every
# container unhealthy and an orchestrator that replaces unhealthy containers would restart
# them all, which cures nothing. `crm-health worker` serves no HTTP: disable the check there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# SIGTERM (the default) stops gracefully: the worker finishes the batch under way, then exits.
STOPSIGNAL SIGTERM
# Migrations first (serve would apply them too; a failed migration then stops the container
# with a clear message before any traffic is accepted). `exec`: crm-health is PID 1 and gets
# the stop signal itself.
CMD ["sh", "-c", "crm-health migrate && exec crm-health serve --host 0.0.0.0 --port 8000"]
