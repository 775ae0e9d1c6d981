"""Every file shipskip writes for a person (pages, badges, `sql --out`, `trends --out`,
`export --to`) goes through here, so it lands inside the folder that person named.

The named folder (OUT_DIR, the working directory, the `--to` folder) is taken as given, links
and all: choosing it is the user's call. Below it nothing is trusted. Each folder on the way
down is opened relative to the one above with O_NOFOLLOW, so a link planted there is never
walked through blindly: one that leads somewhere else inside the named folder is walked again
from the top along its real path, one that leads outside is refused. A file is written to a new
temporary name in its own folder (O_CREAT|O_EXCL|O_NOFOLLOW, so a link planted under that name
cannot be written through) and renamed over the target, which replaces a link standing there
rather than writing into what it points at, and never leaves half a file for a reader.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import UnsafeWrite

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# A chain of links inside the named folder longer than this is refused (a loop, or mischief).
_MAX_LINKS = 16


def locate(path: Path, roots: Sequence[Path]) -> tuple[Path, tuple[str, ...]]:
    """The root `path` lies under, and its parts below that root; UnsafeWrite when under none.

    `path` is read as written (made absolute, `..` folded), and each root both as written and
    as its real path, so `out/x.csv` and `/srv/pages/x.csv` both fall under an OUT_DIR `out`
    that links to /srv/pages. Where several roots hold it, the one nearest the file wins."""
    absolute = Path(os.path.abspath(path))
    found: list[tuple[int, Path, tuple[str, ...]]] = []
    for root in roots:
        for base in (Path(os.path.abspath(root)), root.resolve()):
            if base in absolute.parents:
                parts = absolute.relative_to(base).parts
                found.append((len(parts), root, parts))
    if not found:
        where = " or ".join(str(r) for r in roots)
        raise UnsafeWrite(path, f"write under {where}")
    _, root, parts = min(found, key=lambda f: f[0])
    return root, parts


def _open_folder(root: Path, parts: Sequence[str], path: Path) -> tuple[int, Path]:
    """A descriptor for the folder root/parts (made where missing) and its real path.

    Every step below the root is opened without following a link; a link found on the way is
    followed only when its target lies inside the root, by walking that target's own path from
    the root again, in the same way."""
    root.mkdir(parents=True, exist_ok=True)  # the named folder itself: the user's choice
    top = root.resolve()
    todo = list(parts)
    for _ in range(_MAX_LINKS + 1):
        fd, here = os.open(top, _DIR_FLAGS), top
        try:
            for i, part in enumerate(todo):
                if part in ("", ".", "..") or "/" in part:
                    raise UnsafeWrite(path, f"'{part}' is not a folder name")
                try:
                    inner = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    with suppress(FileExistsError):  # another process may make it first
                        os.mkdir(part, 0o777, dir_fd=fd)
                    inner = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    if not os.path.islink(here / part):
                        raise UnsafeWrite(path, f"{here / part} is a file, not a folder") from None
                    target = Path(os.path.realpath(here / part))
                    if target != top and top not in target.parents:
                        raise UnsafeWrite(
                            path,
                            f"{here / part} is a link to {target}, outside {root}; not writing through it",
                        ) from None
                    todo = [*target.relative_to(top).parts, *todo[i + 1 :]]
                    break
                os.close(fd)
                fd, here = inner, here / part
            else:
                return fd, here
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise UnsafeWrite(path, f"more than {_MAX_LINKS} links on the way; not writing through them")


def _temp_name(name: str) -> str:
    # Unpredictable, so no one can plant something under it ahead of time.
    return f".{name}.{secrets.token_hex(8)}.tmp"


def _put(folder: int, name: str, data: bytes, path: Path) -> None:
    tmp = _temp_name(name)
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=folder
    )
    try:
        try:
            view = memoryview(data)
            while view:  # a plain descriptor, not a file object: a site build writes tens of thousands
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        _rename_into(tmp, folder, name, folder, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder)
        raise


def _rename_into(src: str, src_folder: int, name: str, folder: int, path: Path) -> None:
    try:
        os.replace(src, name, src_dir_fd=src_folder, dst_dir_fd=folder)
    except IsADirectoryError:
        raise UnsafeWrite(path, "a folder stands where the file would go") from None


def write_bytes(root: Path, path: Path, data: bytes) -> Path:
    """Write `data` to `path`, which must lie under `root`; returns `path` as given."""
    root, parts = locate(path, [root])
    folder, _ = _open_folder(root, parts[:-1], path)
    try:
        _put(folder, parts[-1], data, path)
    finally:
        os.close(folder)
    return path


def write_tree(root: Path, files: dict[str, str]) -> None:
    """Write many files (UTF-8) under `root`, each named by its path relative to `root` with
    "/" between folders, as `write_text` writes one: each folder is opened and checked once, not
    once a file, and no path is resolved per file (a site build writes tens of thousands)."""
    by_folder: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for rel, text in files.items():
        *parts, name = rel.split("/")
        if name in ("", ".", ".."):
            raise UnsafeWrite(root / rel, f"'{name}' is not a file name")
        by_folder.setdefault(tuple(parts), []).append((name, text))
    for below, items in by_folder.items():
        # _open_folder refuses "", "." and ".." among the folders, and walks no link out of root.
        folder, _ = _open_folder(root, below, root.joinpath(*below))
        try:
            for name, text in items:
                _put(folder, name, text.encode("utf-8"), root.joinpath(*below, name))
        finally:
            os.close(folder)


def write_text(root: Path, path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path`, which must lie under `root`; returns `path` as given."""
    return write_bytes(root, path, text.encode("utf-8"))


@contextmanager
def staging(root: Path, folder: Path | None = None) -> Iterator[Path]:
    """A private, empty folder (mode 0700) for a writer that needs file names of its own, such as
    DuckDB's Parquet writer. When the block ends without an error, every file made in it is
    moved to the same place under `folder` (default `root`), which must lie under `root`; on an
    error nothing is moved. Either way the private folder is removed."""
    target = folder if folder is not None else root
    same = os.path.abspath(target) in (os.path.abspath(root), str(root.resolve()))
    parts = () if same else locate(target, [root])[1]
    base, real = _open_folder(root, parts, target)
    stage = _temp_name("stage")
    try:
        os.mkdir(stage, 0o700, dir_fd=base)
        try:
            yield real / stage
            _move_all(real / stage, root, parts, target)
        finally:
            shutil.rmtree(stage, dir_fd=base, ignore_errors=True)
    finally:
        os.close(base)


def _move_all(stage: Path, root: Path, parts: tuple[str, ...], target: Path) -> None:
    """Every file under `stage` to the same place under root/parts. Each destination folder is
    opened (and checked) before the first file moves, so a refused one moves nothing."""
    found = [(Path(d).relative_to(stage).parts, sorted(files)) for d, _, files in os.walk(stage)]
    folders: dict[tuple[str, ...], int] = {}
    try:
        for below, _ in found:
            folders[below], _ = _open_folder(root, (*parts, *below), target.joinpath(*below))
        for below, files in found:
            for name in files:
                src = str(stage.joinpath(*below, name))
                _rename_into(src, folders[below], name, folders[below], target.joinpath(*below, name))
    finally:
        for fd in folders.values():
            os.close(fd)
