"""Flow: the store's upkeep on a schedule (DuckLake: fold small files, expire old snapshots)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.states import State

from shipskip import usecases
from shipskip.errors import BadParameter, ShipskipError
from shipskip.orchestration import failed, one_line_parameter_errors
from shipskip.settings import get_settings
from shipskip.store import Store


@one_line_parameter_errors
@flow(name="maintain-store")
def maintain_store(keep_days: int = 7) -> dict[str, int] | State | None:
    """What `shipskip maintain` does; its figures go to the run's log."""
    try:
        if keep_days < 0:
            raise BadParameter("keep_days", f"must be 0 or more, not {keep_days}")
        done = usecases.maintain(Store.from_settings(get_settings()), keep_days)
    except ShipskipError as exc:
        return failed(exc)
    get_run_logger().info(
        "store upkeep: %s", done if done is not None else "nothing to do on the single file"
    )
    return done
