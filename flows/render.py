"""Flow: render a comparison page and publish its scorecard as a Prefect artifact."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import State

from shipskip import usecases
from shipskip.errors import ShipskipError
from shipskip.orchestration import failed, one_line_parameter_errors
from shipskip.settings import get_settings
from shipskip.store import Store


@one_line_parameter_errors
@flow(name="render-comparison")
def render_comparison(tool_a: str, tool_b: str) -> str | State:
    """Write out/compare/A-vs-B.html and .md, and the scorecard as an artifact."""
    settings = get_settings()
    try:
        done = usecases.compare(Store.from_settings(settings), settings, tool_a, tool_b)
    except ShipskipError as exc:
        return failed(exc)
    note = ""
    if not done.order_independent:
        get_run_logger().warning("verdicts for %s vs %s depend on order", tool_a, tool_b)
        note = "\n\n**Flagged: the verdicts depend on the order of the comparison.**"
    create_markdown_artifact(
        key=f"scorecard-{done.path.stem}",  # the pair's one name, in slug order
        markdown=done.markdown + note,
        description=f"Reviewer scorecard: {done.names[0]} vs {done.names[1]}",
    )
    return str(done.path)
