"""The crm-health service: FastAPI app, persistence, worker, CLI."""
