"""Prefect flows: thin orchestration over the shipskip library."""

from shipskip.settings import quiet_prefect

# Before any flow module imports Prefect: analytics off for workers, benches and tests too.
quiet_prefect()
