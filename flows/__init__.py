"""Prefect flows: thin orchestration over the shipskip library."""

from typing import Literal

from shipskip.roster import personas
from shipskip.settings import quiet_prefect

# Before any flow module imports Prefect: analytics off for workers, benches and tests too.
# (shipskip's own modules above do not import Prefect.)
quiet_prefect()

# The personas as a type, so a deployment's `persona` parameter offers them as choices and
# refuses others. Prefect reads parameter types when a flow is defined, so it is made when the
# flows are imported: the flows are the Prefect edge, the library reads the roster lazily.
PersonaName = Literal[personas()]  # type: ignore[valid-type]
