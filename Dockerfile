# syntax=docker/dockerfile:1
# Build stage: a wheel and its dependencies, compiled where needed.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY connector ./connector
COPY signals ./signals
COPY webhooks ./webhooks
RUN pip install --no-cache-dir --upgrade pip && pip install --no-cache-dir .

# Runtime stage: only the virtual environment, run as an unprivileged user.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 crmhealth
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CRM_HEALTH_DATABASE_URL=sqlite+aiosqlite:////data/crm_health.db
RUN mkdir /data && chown crmhealth /data
VOLUME /data
USER crmhealth
WORKDIR /home/crmhealth
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
# Migrations first (serve would apply them too; a failed migration then stops the container
# with a clear message before any traffic is accepted).
CMD ["sh", "-c", "crm-health migrate && exec crm-health serve --host 0.0.0.0 --port 8000"]
