"""Flow: render a comparison page and publish its scorecard as a Prefect artifact."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from shipskip.publish import write_compare
from shipskip.render import scorecard_markdown
from shipskip.settings import get_settings
from shipskip.store import Store


@flow(name="render-comparison")
def render_comparison(tool_a: str, tool_b: str) -> str:
    settings = get_settings()
    path, panels = write_compare(Store(settings.db_path), settings.out_dir, tool_a, tool_b)
    create_markdown_artifact(
        key=f"scorecard-{tool_a}-vs-{tool_b}",
        markdown=scorecard_markdown(panels),
        description=f"Reviewer scorecard: {panels[0].card.name} vs {panels[1].card.name}",
    )
    return str(path)
