"""Flow: render a comparison page and publish its scorecard as a Prefect artifact."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from shipskip.publish import compare_both_orders, verdicts_by_tool, write_compare
from shipskip.quality import order_independent
from shipskip.render import scorecard_markdown
from shipskip.settings import get_settings
from shipskip.store import Store


@flow(name="render-comparison")
def render_comparison(tool_a: str, tool_b: str) -> str:
    settings = get_settings()
    store = Store(settings.db_path)
    path, panels = write_compare(store, settings.out_dir, tool_a, tool_b)
    stable = order_independent(*(verdicts_by_tool(p) for p in compare_both_orders(store, tool_a, tool_b)))
    note = "" if stable else "\n\n**Flagged: the verdicts depend on the order of the comparison.**"
    if not stable:
        get_run_logger().warning("verdicts for %s vs %s depend on order", tool_a, tool_b)
    create_markdown_artifact(
        key=f"scorecard-{tool_a}-vs-{tool_b}",
        markdown=scorecard_markdown(panels) + note,
        description=f"Reviewer scorecard: {panels[0].card.name} vs {panels[1].card.name}",
    )
    return str(path)
