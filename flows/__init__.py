"""Prefect flows: thin orchestration over the shipskip library.

The folder is `flows/` in a checkout (prefect.yaml's entrypoints name its files) and installs
as the package `shipskip_flows`; its modules import one another relatively, so both work.
"""

from shipskip.settings import quiet_prefect

# Before any flow module imports Prefect: analytics off for workers, benches and tests too.
# (shipskip's own modules above do not import Prefect.)
quiet_prefect()
