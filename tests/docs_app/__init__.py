"""The tasks that docs/quickstart.md and docs/celery.md show, so tests can run them."""
