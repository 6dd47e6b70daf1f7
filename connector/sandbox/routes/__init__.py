"""The sandbox's route handlers, one module per area; `app.create_sandbox_app` joins them."""
