"""Webhooks (SPEC 9): a durable outbox written with the events it reports, delivered
with Standard Webhooks signatures by whichever node claims each delivery."""
