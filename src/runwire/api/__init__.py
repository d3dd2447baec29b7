"""REST API under ``/api``: a thin edge over the stores and the run service."""
