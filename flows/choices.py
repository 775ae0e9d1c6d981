"""The personas as a parameter type of the flows."""

from typing import Literal

from shipskip.roster import personas

# A deployment's `persona` parameter offers the personas as choices and refuses others. Prefect
# reads parameter types when a flow is defined, so the roster is read when the flows are
# imported: the flows are the Prefect edge, the library reads the roster lazily.
PersonaName = Literal[personas()]  # type: ignore[valid-type]
