"""Prefect flows: thin orchestration over the shipskip library."""
