"""Flows: publish the static site (after reviews, reruns, and weekly for the digest)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import State

from shipskip import site
from shipskip.errors import ShipskipError
from shipskip.orchestration import failed, one_line_parameter_errors
from shipskip.settings import Settings, get_settings
from shipskip.store import Store


def publish(store: Store, settings: Settings, what: str) -> site.SiteReport:
    """Bring the site up to date (only pages whose inputs changed are written) and leave a
    `site-pages` table artifact on the calling flow run listing the files written and removed."""
    report = site.build(store, settings)
    logger = get_run_logger()
    for line in report.left_out:
        logger.warning("left out of the site: %s", line)
    rows = [{"file": f, "change": "written"} for f in report.written]
    rows += [{"file": f, "change": "removed"} for f in report.removed]
    create_table_artifact(
        key="site-pages",
        table=rows or [{"file": "(none)", "change": "all pages up to date"}],
        description=f"{what}: {len(report.written)} files written, {len(report.removed)} removed, "
        f"{report.unchanged} pages unchanged, under {settings.out_dir}",
    )
    logger.info(
        "site under %s: %d files written, %d removed, %d pages unchanged",
        settings.out_dir, len(report.written), len(report.removed), report.unchanged,
    )  # fmt: skip
    return report


@one_line_parameter_errors
@flow(name="publish-site")
def publish_site() -> dict | State:
    """Write every page of the static site whose inputs changed since the last build."""
    settings = get_settings()
    try:
        return publish(Store.from_settings(settings), settings, "site build").as_dict()
    except ShipskipError as exc:
        return failed(exc)


@one_line_parameter_errors
@flow(name="weekly-digest")
def weekly_digest() -> dict | State:
    """The week's digest page and the digest archive, with the rest of the site brought up to
    date around them (the archive and index link to them)."""
    settings = get_settings()
    try:
        return publish(Store.from_settings(settings), settings, "weekly digest").as_dict()
    except ShipskipError as exc:
        return failed(exc)
