"""Flow: the store's upkeep on a schedule (DuckLake: fold small files, expire old snapshots)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from shipskip import usecases
from shipskip.settings import get_settings
from shipskip.store import Store


@flow(name="maintain-store")
def maintain_store(keep_days: int = 7) -> dict[str, int] | None:
    """What `shipskip maintain` does; its figures go to the run's log."""
    done = usecases.maintain(Store.from_settings(get_settings()), keep_days)
    get_run_logger().info(
        "store upkeep: %s", done if done is not None else "nothing to do on the single file"
    )
    return done
