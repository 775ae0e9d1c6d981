"""Writing the site's pages: which files are there, and rendering and writing a stage's
pages, in this process or in forked ones."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .writes import write_tree

# Rendered files held in memory before they are written (bounds a big build's memory).
_WRITE_BATCH = 2000
# Fewer pages than this to write are rendered in this process whatever SITE_PROCESSES says:
# starting processes costs more than it saves (a review's publish writes a few dozen).
_FORK_FROM = 2000


@dataclass(frozen=True)
class Page:
    """One page of the site: `path` (relative to OUT_DIR) names it in `page_digests`; `render`
    gives every file it consists of (an HTML page and its Markdown twin, say)."""

    path: str
    digest: str
    render: Callable[[], dict[str, str]]
    stage: int  # 0: pages nothing else depends on; 1: category pages; 2: index, feed, sitemap
    # The Markdown twin this page has when SITE_MARKDOWN is on; with it off, a twin left by an
    # earlier build is deleted when the page is written, so none goes stale.
    twin: str = ""


def cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS says, else every CPU)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def remove_files(out_dir: Path, rels: list[str]) -> list[str]:
    """Remove these files under `out_dir` (a link is left alone, never followed): those removed.
    A build removes the pages of tools no longer stored, and the Markdown twins an earlier build
    wrote beside pages now written without them."""
    removed = []
    for rel in rels:
        target = out_dir / rel
        if target.is_file() and not target.is_symlink():
            target.unlink()
            removed.append(rel)
    return removed


def files_in(out_dir: Path, folders: set[str]) -> set[str]:
    """The files (or links to files, as Path.is_file sees them) in each of `folders` under
    `out_dir`, as paths relative to it: one listing a folder rather than a stat a page."""
    found: set[str] = set()
    for folder in folders:
        try:
            with os.scandir(out_dir / folder) as entries:
                found.update(f"{folder}/{e.name}" if folder else e.name for e in entries if e.is_file())
        except (FileNotFoundError, NotADirectoryError):
            continue
    return found


# The pages a forked renderer works on: set before the fork, so nothing is pickled but indexes.
_FORKED: list[Page] = []


def _render_range(out_dir: Path, start: int, stop: int) -> list[str]:
    out: list[str] = []
    files: dict[str, str] = {}
    for page in _FORKED[start:stop]:
        for rel, text in page.render().items():
            files[rel] = text
            out.append(rel)
        if len(files) >= _WRITE_BATCH:
            write_tree(out_dir, files)
            files = {}
    write_tree(out_dir, files)
    return out


def render_and_write(out_dir: Path, todo: list[Page], processes: int) -> list[str]:
    """Render and write `todo`, in this process or, for a big build with SHIPSKIP_SITE_PROCESSES
    above 1, in that many forked ones (rendering is most of a full build's time, and Jinja holds
    the GIL). Returns the files written."""
    global _FORKED
    import multiprocessing

    # A daemonic process (a pool's worker) may not start processes of its own.
    if processes <= 1 or len(todo) < _FORK_FROM or multiprocessing.current_process().daemon:
        _FORKED = todo
        try:
            return _render_range(out_dir, 0, len(todo))
        finally:
            _FORKED = []
    step = -(-len(todo) // (processes * 4))  # a few chunks a process, so none waits on the last
    _FORKED = todo
    try:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            parts = pool.starmap(_render_range, [(out_dir, i, i + step) for i in range(0, len(todo), step)])
    finally:
        _FORKED = []
    return [rel for part in parts for rel in part]
