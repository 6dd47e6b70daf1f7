"""`python -m webhooks` is the `crm-health` command."""

from webhooks.cli import main

main()
