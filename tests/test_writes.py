"""Files written for a person stay inside the folder they named: links planted below it are
never written through, whether they stand for a subfolder, a temporary file or the file itself."""

import os

import pytest
from conftest import make_card, make_take
from typer.testing import CliRunner

from shipskip import writes
from shipskip.cli import app
from shipskip.errors import UnsafeWrite
from shipskip.publish import write_compare, write_tool
from shipskip.store import Store

P = ["builder", "skeptic", "futurist", "creator", "founder"]


def reviewed(store: Store, slug: str, name: str) -> None:
    card = make_card(slug=slug, name=name)
    run = store.begin_run(card)
    store.commit_review(run, card, [make_take(p, "ship", 80, f"I ship {name} because it works.") for p in P])


@pytest.fixture
def two_tools(file_store):
    reviewed(file_store, "alpha", "Alpha")
    reviewed(file_store, "beta", "Beta")
    return file_store


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.slow
def test_a_subfolder_that_links_outside_is_refused_and_nothing_lands_there(two_tools, isolated):
    out, elsewhere = isolated / "out", isolated / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "tools").symlink_to(elsewhere)
    with pytest.raises(UnsafeWrite) as e:
        write_tool(two_tools, out, "alpha")
    assert "outside" in str(e.value) and str(out / "tools") in str(e.value)
    assert files_under(elsewhere) == []
    res = CliRunner().invoke(app, ["page", "alpha"])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and "tools" in lines[0], res.output
    assert files_under(elsewhere) == []


def test_the_output_folder_itself_may_be_a_link(two_tools, isolated, monkeypatch):
    # OUT_DIR is the user's choice, links and all: only what lies below it is checked.
    real = isolated / "pages"
    real.mkdir()
    (isolated / "link").symlink_to(real)
    path, _ = write_tool(two_tools, isolated / "link", "alpha")
    assert path == isolated / "link" / "tools" / "alpha.html"
    assert "Alpha" in (real / "tools" / "alpha.html").read_text()


def test_a_link_that_stays_inside_the_folder_is_followed(two_tools, isolated):
    out = isolated / "out"
    (out / "site" / "tool-pages").mkdir(parents=True)
    (out / "tools").symlink_to(out / "site" / "tool-pages")
    write_tool(two_tools, out, "alpha")
    assert (out / "site" / "tool-pages" / "alpha.html").is_file()
    assert (out / "tools").is_symlink()  # walked along its real path, not replaced


def test_planted_temporary_and_target_links_are_never_written_through(two_tools, isolated):
    out, victim, victim2 = isolated / "out", isolated / "victim.txt", isolated / "victim2.txt"
    victim.write_text("precious\n")
    victim2.write_text("also precious\n")
    (out / "compare").mkdir(parents=True)
    (out / "tools").mkdir()
    # The temporary name the page writer once used, and the page itself, both planted as links.
    (out / "compare" / "alpha-vs-beta.html.tmp").symlink_to(victim)
    (out / "compare" / "alpha-vs-beta.md.tmp").symlink_to(victim)
    (out / "tools" / "alpha.html").symlink_to(victim2)
    path, _ = write_compare(two_tools, out, "alpha", "beta")
    assert victim.read_text() == "precious\n" and victim2.read_text() == "also precious\n"
    assert not path.is_symlink() and "Alpha" in path.read_text()
    page = out / "tools" / "alpha.html"
    assert not page.is_symlink() and "Alpha" in page.read_text()
    # No temporary file of ours is left behind.
    assert not [p for p in out.rglob(".*.tmp")]


def test_paths_that_leave_the_folder_are_refused(tmp_path):
    root = tmp_path / "root"
    for bad in (tmp_path / "x.txt", root / ".." / "x.txt", root / "a" / ".." / ".." / "x.txt", root):
        with pytest.raises(UnsafeWrite):
            writes.write_text(root, bad, "no")
    assert not (tmp_path / "x.txt").exists()
    # `..` that stays inside is fine: the path is read as written.
    writes.write_text(root, root / "a" / ".." / "b.txt", "yes")
    assert (root / "b.txt").read_text() == "yes"


def test_what_stands_in_the_way_is_named(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "file").write_text("a file")
    (root / "folder").mkdir()
    with pytest.raises(UnsafeWrite, match="is a file, not a folder"):
        writes.write_text(root, root / "file" / "x.txt", "no")
    with pytest.raises(UnsafeWrite, match="a folder stands where the file would go"):
        writes.write_text(root, root / "folder", "no")
    # A loop of links inside the folder is refused, not walked for ever.
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    with pytest.raises(UnsafeWrite):
        writes.write_text(root, root / "loop-a" / "x.txt", "no")
    assert (root / "file").read_text() == "a file" and list((root / "folder").iterdir()) == []


def test_a_staged_write_that_fails_moves_nothing(tmp_path):
    root = tmp_path / "root"
    with pytest.raises(RuntimeError), writes.staging(root) as stage:
        (stage / "a.txt").write_text("half")
        raise RuntimeError("the writer failed")
    assert files_under(root) == []
    with writes.staging(root) as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "b.txt").write_text("whole")
        assert oct(os.stat(stage).st_mode & 0o777) == oct(0o700)  # no one else can plant a link in it
    assert files_under(root) == ["sub", "sub/b.txt"]


def test_a_staged_write_into_a_folder_linking_outside_moves_nothing(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "views").symlink_to(outside)
    with pytest.raises(UnsafeWrite), writes.staging(root) as stage:
        (stage / "first.txt").write_text("1")
        (stage / "views").mkdir()
        (stage / "views" / "second.txt").write_text("2")
    assert files_under(outside) == [] and files_under(root) == ["views"]


@pytest.mark.slow
def test_sql_and_trends_out_never_write_through_a_link(fake, isolated, tmp_path, monkeypatch):
    Store(isolated / "shipskip.duckdb").init()
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    monkeypatch.chdir(work)
    (work / "reports").symlink_to(outside)
    victim = outside / "victim.csv"
    victim.write_text("precious\n")
    (work / "here.csv").symlink_to(victim)
    for args in (
        ["sql", "SELECT 1 AS a", "--format", "csv", "--out", "reports/x.csv"],
        ["sql", "SELECT 1 AS a", "--format", "parquet", "--out", "reports/x.parquet"],
        ["trends", "--out", "reports/t.html"],
    ):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, (args, res.output)
    assert files_under(outside) == ["victim.csv"]
    # A link standing where the file goes is replaced by the file, not written through.
    res = CliRunner().invoke(app, ["sql", "SELECT 1 AS a", "--format", "csv", "--out", "here.csv"])
    assert res.exit_code == 0, res.output
    assert victim.read_text() == "precious\n" and (work / "here.csv").read_text().startswith("a")
    res = CliRunner().invoke(app, ["sql", "SELECT 2 AS b", "--format", "parquet", "--out", "p/b.parquet"])
    assert res.exit_code == 0 and (work / "p" / "b.parquet").is_file(), res.output
    assert files_under(work / "p") == ["b.parquet"]


def test_a_site_builds_batch_stays_inside_the_folder(tmp_path):
    # write_tree takes paths relative to the folder, as a site build names its pages.
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    elsewhere.mkdir()
    root.mkdir()
    (root / "tools").symlink_to(elsewhere)
    for bad in ({"../x.txt": "no"}, {"a/../../x.txt": "no"}, {"a/..": "no"}, {"": "no"}, {"a//b.txt": "no"}):
        with pytest.raises(UnsafeWrite):
            writes.write_tree(root, bad)
    with pytest.raises(UnsafeWrite, match="outside"):
        writes.write_tree(root, {"tools/alpha.html": "no"})
    assert files_under(elsewhere) == [] and not (tmp_path / "x.txt").exists()
    writes.write_tree(root, {"index.html": "één", "compare/a-vs-b.html": "x", "compare/b-vs-c.html": "y"})
    assert (root / "index.html").read_text(encoding="utf-8") == "één"
    assert sorted(p.name for p in (root / "compare").iterdir()) == ["a-vs-b.html", "b-vs-c.html"]
