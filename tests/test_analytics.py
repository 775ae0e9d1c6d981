"""Each view on a small fixture whose answers were worked out by hand."""

import re
from datetime import date, datetime, timedelta
from itertools import count

import duckdb
import pytest
from conftest import ROOT, make_card, make_take

from shipskip.analytics import check_read_only, export, run_sql, trend_points, trend_summary, write_result
from shipskip.errors import ShipskipError
from shipskip.render import trends_page
from shipskip.store import Store

P = ["builder", "skeptic", "futurist", "creator", "founder"]


def review(store, card, scores, when):
    run = store.begin_run(card)
    takes = []
    for p, s in zip(P, scores, strict=True):
        v = None if s is None else ("ship" if s >= 60 else "skip")
        takes.append(make_take(p, v, s, f"{card.name} by {p}").model_copy(update={"model": "gpt-x"}))
    store.commit_review(run, card, takes)
    with store.transaction() as con:
        con.execute("UPDATE takes SET created_at = ? WHERE run_id = ?", [when, run.run_id])
    return run


@pytest.fixture
def fx(store):
    return build(store)


def build(store):
    # alpha (Models, week of 2026-11-02): 80 70 40 90 abstain
    # beta (Video, week of 2026-11-09): 50 30 60 20 55
    review(store, make_card(slug="alpha", name="Alpha", category="AI Models"), [80, 70, 40, 90, None],
           datetime(2026, 11, 3, 12))  # fmt: skip
    review(store, make_card(slug="beta", name="Beta", category="Video"), [50, 30, 60, 20, 55],
           datetime(2026, 11, 10, 12))  # fmt: skip
    # An editor reruns alpha's skeptic on another model: 70 -> 35.
    run = store.begin_run(store.tool("alpha"), kind="rerun", rerun_reason="second look")
    t = make_take("skeptic", "skip", 35, "Alpha again").model_copy(update={"model": "gpt-y"})
    store.commit_review(run, store.tool("alpha"), [t])
    with store.transaction() as con:
        con.execute(
            "UPDATE takes SET created_at = ? WHERE run_id = ?", [datetime(2026, 11, 11, 9), run.run_id]
        )
        con.execute(
            "INSERT INTO model_prices (model, usd_per_mtok_prompt, usd_per_mtok_completion) VALUES ('gpt-x', 1.0, 2.0)"
        )
    return store


def q(store, sql):
    return store.query(sql)


@pytest.mark.slow
def test_current_takes_and_panel_verdicts(fx):
    cur = {(r["slug"], r["persona"]): r["score"] for r in q(fx, "SELECT * FROM current_takes")}
    assert len(cur) == 10 and cur[("alpha", "skeptic")] == 35
    v = {r["slug"]: r for r in q(fx, "SELECT * FROM panel_verdicts")}
    # alpha now: ship 80, skip 35, skip 40, ship 90, abstain -> 2/2 Mixed 50%
    assert (v["alpha"]["label"], v["alpha"]["ship_pct"], v["alpha"]["abstain"]) == ("Mixed", 50, 1)
    # beta: skip 50, skip 30, ship 60, skip 20, skip 55 -> 1/4 Skip 20%
    assert (v["beta"]["label"], v["beta"]["ship_pct"]) == ("Skip", 20)


@pytest.mark.slow
def test_persona_weekly_and_category(fx):
    rows = {(r["persona"], str(r["week"])): r for r in q(fx, "SELECT * FROM persona_weekly")}
    # Current takes, in the week each was made. Skeptic: alpha's current take is its v2 (35),
    # made in the week of 11-09 with beta's (30); alpha's v1 (70) is history, so the week of
    # 11-02 has no Skeptic take.
    assert ("skeptic", "2026-11-02") not in rows
    assert rows[("skeptic", "2026-11-09")]["mean_score"] == 32.5
    assert rows[("skeptic", "2026-11-09")]["takes"] == 2 and rows[("skeptic", "2026-11-09")]["ship_rate"] == 0
    assert (
        rows[("founder", "2026-11-02")]["scored"] == 0
        and rows[("founder", "2026-11-02")]["ship_rate"] is None
    )
    cat = {(r["persona"], r["category"]): r for r in q(fx, "SELECT * FROM persona_category")}
    assert cat[("skeptic", "Models")]["takes"] == 1 and cat[("skeptic", "Models")]["mean_score"] == 35
    assert cat[("futurist", "Video")]["ship_rate"] == 1.0
    model = {(r["persona"], r["model"]): r for r in q(fx, "SELECT * FROM persona_model_weekly")}
    assert ("skeptic", "gpt-x") in model and model[("skeptic", "gpt-x")]["scored"] == 1  # beta's
    assert model[("skeptic", "gpt-y")]["mean_score"] == 35
    # The history of every version, under names that say so.
    old = {(r["persona"], str(r["week"])): r for r in q(fx, "SELECT * FROM persona_weekly_all_versions")}
    assert old[("skeptic", "2026-11-02")]["mean_score"] == 70
    assert old[("skeptic", "2026-11-09")]["takes"] == 2
    old_cat = {(r["persona"], r["category"]): r for r in q(fx, "SELECT * FROM persona_category_all_versions")}
    assert (
        old_cat[("skeptic", "Models")]["takes"] == 2 and old_cat[("skeptic", "Models")]["mean_score"] == 52.5
    )
    old_model = q(fx, "SELECT * FROM persona_model_weekly_all_versions WHERE persona = 'skeptic'")
    assert sum(r["scored"] for r in old_model) == 3


def _categories(page: str) -> str:
    return re.search(r'<table id="categories">.*?</table>', page, re.S).group(0)


@pytest.mark.slow
def test_rerunning_a_seat_five_times_changes_no_figure_that_counts_current_takes(
    fake, store, isolated, monkeypatch
):
    """Reruns replace a seat's take: the views, the trends report and page, and the reviewer
    page count each tool once per seat and give the same figures after five reruns; only the
    `_all_versions` history grows."""
    from conftest import rerun, review
    from typer.testing import CliRunner

    import shipskip.backends as store_clock
    from shipskip.cli import app
    from shipskip.publish import write_reviewer

    # The store reads the time from one clock: here a Wednesday ticking a second per reading,
    # so every take of the test falls in one week (2026-11-02) whatever the day it runs.
    ticks = count()
    monkeypatch.setattr(
        store_clock, "now", lambda: datetime(2026, 11, 4, 12) + timedelta(seconds=next(ticks))
    )
    monkeypatch.chdir(isolated)
    for name in ("claw-code.yaml", "smollm3.yaml"):
        review(ROOT / "data" / "tools" / name)
    current = ("persona_weekly", "persona_category", "persona_model_weekly")
    history = tuple(f"{v}_all_versions" for v in current)

    def figures():
        views = {v: q(store, f"SELECT * FROM {v} ORDER BY ALL") for v in (*current, *history)}
        res = CliRunner().invoke(app, ["trends", "--out", "reports/t.html"])
        assert res.exit_code == 0, res.output
        page = write_reviewer(store, isolated / "out", ROOT / "prompts", "skeptic").read_text()
        return views, res.output, (isolated / "reports" / "t.html").read_text(), _categories(page)

    views, report, trends_html, categories = figures()
    assert "Developer Tools" in categories and "Current takes" in trends_html
    skeptic = next(r for r in views["persona_weekly"] if r["persona"] == "skeptic")
    assert skeptic["takes"] == 2
    for n in range(5):
        rerun("claw-code", "skeptic", f"second look {n}")
    assert q(store, "SELECT count(*) AS n FROM takes WHERE persona = 'skeptic'")[0]["n"] == 7
    views_after, report_after, trends_after, categories_after = figures()
    for v in current:
        assert views_after[v] == views[v], v
    assert (report_after, trends_after, categories_after) == (report, trends_html, categories)
    # The history counts every version: the Skeptic's five reruns are five more takes.
    for v in history:
        before = sum(r["scored"] for r in views[v] if r["persona"] == "skeptic")
        assert sum(r["scored"] for r in views_after[v] if r["persona"] == "skeptic") == before + 5, v
    everything = CliRunner().invoke(app, ["trends", "--all-versions", "--out", "reports/all.html"])
    assert everything.exit_code == 0 and "every take version" in everything.output
    assert "Every take version" in (isolated / "reports" / "all.html").read_text()


@pytest.mark.slow
def test_score_distribution_and_disagreement(fx):
    dist = {(r["persona"], r["bucket"]): r["takes"] for r in q(fx, "SELECT * FROM score_distribution")}
    assert dist[("creator", 90)] == 1 and dist[("creator", 20)] == 1 and dist[("skeptic", 30)] == 2
    d = {r["slug"]: r for r in q(fx, "SELECT * FROM persona_disagreement")}
    assert (d["alpha"]["spread"], d["alpha"]["highest"], d["alpha"]["lowest"]) == (55, "creator", "skeptic")
    assert d["beta"]["spread"] == 40 and d["beta"]["scored"] == 5


@pytest.mark.slow
def test_take_changes(fx):
    rows = q(fx, "SELECT * FROM take_changes")
    assert len(rows) == 1
    r = rows[0]
    assert (r["prev_score"], r["score"], r["delta"]) == (70, 35, -35)
    assert (r["prev_verdict"], r["verdict"], r["prev_model"], r["model"]) == (
        "ship",
        "skip",
        "gpt-x",
        "gpt-y",
    )
    assert r["reason"] == "second look" and r["kind"] == "rerun"


@pytest.mark.slow
def test_costs_per_run_and_model(fx):
    runs = q(fx, "SELECT * FROM run_costs ORDER BY started_at")
    # Each scored take has 10 prompt and 5 completion tokens (the abstention none); gpt-x costs
    # $1 and $2 per million: alpha's run is 4 * (10 * 1 + 5 * 2) / 1e6.
    assert runs[0]["prompt_tokens"] == 40 and runs[0]["cost_usd"] == pytest.approx(4 * 20 / 1e6)
    assert runs[1]["prompt_tokens"] == 50
    assert runs[2]["kind"] == "rerun" and runs[2]["cost_usd"] is None  # gpt-y has no price
    models = {r["model"]: r for r in q(fx, "SELECT * FROM model_costs")}
    assert models["gpt-x"]["takes"] == 10 and models["gpt-y"]["takes"] == 1


@pytest.mark.slow
def test_sql_is_read_only(fx, tmp_path):
    assert run_sql(fx, "SELECT count(*) FROM takes").rows == [(11,)]
    for bad in [
        "DELETE FROM takes",
        "SELECT 1; DROP TABLE takes",
        "COPY takes TO 'x.csv'",
        "ATTACH 'other.db'",
        "CREATE TABLE x (a INT)",
        "UPDATE takes SET score = 1",
    ]:
        with pytest.raises(ShipskipError):
            check_read_only(bad)
    assert run_sql(fx, "SELECT count(*) FROM takes").rows == [(11,)]
    with fx.connect(read_only=True) as con, pytest.raises(duckdb.Error):
        con.execute("DELETE FROM takes")


@pytest.mark.slow
def test_sql_formats_and_export(fx, tmp_path):
    write_result(fx, "SELECT slug, label FROM panel_verdicts ORDER BY slug", "csv", tmp_path / "v.csv")
    assert (tmp_path / "v.csv").read_text().splitlines() == ["slug,label", "alpha,Mixed", "beta,Skip"]
    write_result(fx, "SELECT * FROM current_takes", "parquet", tmp_path / "c.parquet")
    assert duckdb.execute(f"SELECT count(*) FROM '{tmp_path / 'c.parquet'}'").fetchone()[0] == 10
    paths = export(fx, tmp_path / "exp")
    assert {p.stem for p in paths} >= {
        "takes",
        "runs",
        "tools",
        "panel_verdicts",
        "persona_weekly",
        "eval_items",
    }
    verdicts = tmp_path / "exp" / "views" / "panel_verdicts.parquet"
    assert duckdb.execute(f"SELECT count(*) FROM '{verdicts}'").fetchone()[0] == 2
    assert duckdb.execute(f"SELECT count(*) FROM '{tmp_path / 'exp' / 'takes.parquet'}'").fetchone()[0] == 11


@pytest.mark.slow
def test_trends_with_data_and_empty(fx, store):
    # Current takes: alpha's Skeptic take is its rerun (35, week of 11-09), counted once.
    pts = trend_points(fx, persona="skeptic")
    assert [(str(p.week), p.mean_score) for p in pts] == [("2026-11-09", 32.5)]
    s = trend_summary(pts)[0]
    assert (s["weeks"], s["scored"], s["mean_score"], s["ship_rate"]) == (1, 2, 32.5, 0)
    # Every version, the history: the first take (70) counts too.
    pts = trend_points(fx, persona="skeptic", all_versions=True)
    assert [(str(p.week), p.mean_score) for p in pts] == [("2026-11-02", 70), ("2026-11-09", 32.5)]
    s = trend_summary(pts)[0]
    assert (s["weeks"], s["scored"], s["mean_score"], s["ship_rate"]) == (2, 3, 45.0, round(1 / 3, 3))
    assert [p.scored for p in trend_points(fx, persona="skeptic", category="Models")] == [1]
    history = trend_points(fx, persona="skeptic", category="Models", all_versions=True)
    assert [p.scored for p in history] == [1, 1]
    assert trend_points(fx, category="video", since=date(2026, 11, 10))[0].persona == "builder"
    html = trends_page(trend_points(fx), trend_summary(trend_points(fx)), "all", date(2026, 11, 24))
    assert (
        html.count("<svg") == 2
        and "<polyline" in html
        and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    empty = trends_page([], [], "all", date(2026, 11, 24))
    assert 'id="empty"' in empty and "<svg" not in empty


def test_the_line_chart_dates_every_week_and_keys_seats_in_order():
    from datetime import timedelta

    from shipskip.charts import line_chart

    weeks = [date(2026, 9, 7) + timedelta(weeks=i) for i in range(5)]
    svg = str(line_chart({p: [(w, 50.0) for w in weeks] for p in ("skeptic", "builder")}, 100, "t"))
    assert all(w.strftime("%b %d") in svg for w in weeks)  # every week has its date
    assert svg.index(">Builder<") < svg.index(">Skeptic<")  # the legend follows seat order
    assert svg.count("<line") == 5  # a gridline every quarter
    many = [date(2026, 1, 5) + timedelta(weeks=i) for i in range(30)]
    crowded = str(line_chart({"builder": [(w, 50.0) for w in many]}, 100, "t"))
    assert sum(w.strftime("%b %d") in crowded for w in many) <= 8  # thinned, never overlapping


def test_trends_command_on_an_empty_database(isolated):
    from typer.testing import CliRunner

    from shipskip.cli import app

    res = CliRunner().invoke(app, ["trends"])
    assert res.exit_code == 0 and "No scored takes" in res.output
    assert (isolated / "out" / "trends.html").is_file()


@pytest.mark.slow
def test_sql_runs_in_a_sandbox_without_files_network_or_extensions(fx, tmp_path, monkeypatch):
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("key=sk-do-not-read\n")
    for query in [
        f"SELECT * FROM read_csv('{secret_file}')",
        "SELECT * FROM read_text('/proc/self/environ')",
        "SELECT * FROM read_csv('https://example.invalid/x.csv')",
        "SELECT current_setting('enable_external_access') AS v, * FROM read_text('/etc/hostname')",
    ]:
        with pytest.raises(ShipskipError) as e:
            run_sql(fx, query)
        assert "sk-do-not-read" not in str(e.value)
    # Parquet output may write its own file, and nothing else.
    write_result(fx, "SELECT 1 AS a", "parquet", tmp_path / "ok.parquet")
    with pytest.raises(ShipskipError):
        write_result(fx, f"SELECT * FROM read_csv('{secret_file}')", "parquet", tmp_path / "x.parquet")


def test_sql_out_stays_under_the_working_directory(fake, isolated, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from shipskip.cli import app

    fx_store = Store(isolated / "shipskip.duckdb")
    fx_store.init()
    monkeypatch.chdir(tmp_path)
    outside = tmp_path.parent / "elsewhere.csv"
    res = CliRunner().invoke(app, ["sql", "SELECT 1 AS a", "--format", "csv", "--out", str(outside)])
    assert res.exit_code == 2 and not outside.exists() and "--out" in res.output
    ok = CliRunner().invoke(app, ["sql", "SELECT 1 AS a", "--format", "csv", "--out", "here.csv"])
    assert ok.exit_code == 0 and (tmp_path / "here.csv").read_text().startswith("a")


@pytest.mark.slow
def test_sql_fetches_only_up_to_the_limit(fx):
    from shipskip.analytics import run_sql

    # A billion rows: fetching them all would not finish; the first 50 come at once.
    res = run_sql(fx, "SELECT range AS n FROM range(1000000000)", limit=50)
    assert len(res.rows) == 50 and res.more and res.columns == ["n"]
    small = run_sql(fx, "SELECT 1 AS one", limit=50)
    assert small.rows == [(1,)] and not small.more


# A query DuckDB would need hours for: it ends only when interrupted.
ENDLESS = "SELECT count(*) AS n FROM range(1000000000000) a WHERE hash(a.range) = 42"


@pytest.mark.slow
@pytest.mark.timeout(120)  # before the time limit existed this query ran for hours
def test_an_analyst_query_stops_at_its_time_limit(fx, tmp_path):
    from shipskip.errors import QueryTimeout

    fx.query_timeout_s = 0.5
    with pytest.raises(QueryTimeout) as e:
        run_sql(fx, ENDLESS)
    assert e.value.seconds == 0.5 and "SHIPSKIP_QUERY_TIMEOUT_S" in str(e.value)
    with pytest.raises(QueryTimeout):
        write_result(fx, ENDLESS, "parquet", tmp_path / "never.parquet")
    with pytest.raises(QueryTimeout), fx.analysing() as con:
        con.execute(ENDLESS).fetchall()
    assert not (tmp_path / "never.parquet").exists() and list(tmp_path.glob(".*")) == []
    # A quick query well within the limit is unaffected, and so is the next one.
    assert run_sql(fx, "SELECT count(*) FROM takes").rows == [(11,)]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_sql_command_stops_at_the_limit_with_one_line(fx, isolated, monkeypatch):
    from typer.testing import CliRunner

    from shipskip.cli import app

    monkeypatch.setenv("SHIPSKIP_QUERY_TIMEOUT_S", "1")
    res = CliRunner().invoke(app, ["sql", ENDLESS])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and "SHIPSKIP_QUERY_TIMEOUT_S" in lines[0], res.output


@pytest.mark.slow
def test_an_analyst_reads_a_snapshot_and_holds_no_lock_on_the_file(file_store, isolated):
    """While an analyst's query is open, a vote in the same process (and so any writer) gets the
    file at once; the query goes on seeing the data as it was when it started."""
    build(file_store)
    with file_store.sandbox() as con:
        assert con.execute("SELECT count(*) FROM votes").fetchone() == (0,)
        assert file_store.add_vote("alpha", "ship", "ann") is False
        assert con.execute("SELECT count(*) FROM votes").fetchone() == (0,)
        assert [p.name for p in isolated.glob(".shipskip-snapshot-*")]  # the copy it reads
    with file_store.analysing():  # the store's own reads in the block go to a snapshot too
        assert file_store.query("SELECT count(*) AS n FROM votes") == [{"n": 1}]
        file_store.path.unlink()  # the file itself is not needed any more
        assert file_store.query("SELECT count(*) AS n FROM takes") == [{"n": 11}]
    assert list(isolated.glob(".shipskip-snapshot-*")) == []  # removed once read


@pytest.mark.slow
def test_a_snapshot_left_by_a_dead_process_is_removed(file_store, isolated):
    build(file_store)
    dead = isolated / ".shipskip-snapshot-999999999-abc"  # no such process
    dead.mkdir()
    (dead / "shipskip.duckdb").write_bytes(b"stale copy")
    assert run_sql(file_store, "SELECT count(*) FROM takes").rows == [(11,)]
    assert not dead.exists()


@pytest.mark.slow
def test_export_needs_a_new_or_empty_folder_or_overwrite(fx, isolated, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from shipskip.cli import app

    runner = CliRunner()
    exp = tmp_path / "exp"
    exp.mkdir()  # an empty folder is fine
    assert runner.invoke(app, ["export", "--to", str(exp)]).exit_code == 0
    takes = exp / "takes.parquet"
    before = takes.read_bytes()
    (exp / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["export", "--to", str(exp)])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and "--overwrite" in lines[0] and str(exp) in lines[0]
    assert takes.read_bytes() == before  # not replaced without asking
    review(fx, make_card(slug="gamma", name="Gamma"), [60, 60, 60, 60, 60], datetime(2026, 11, 12))
    res = runner.invoke(app, ["export", "--to", str(exp), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert duckdb.execute(f"SELECT count(*) FROM '{takes}'").fetchone()[0] == 16
    assert (exp / "notes.txt").read_text() == "mine"  # what the export did not write stays
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for flags in ([], ["--overwrite"]):
        res = runner.invoke(app, ["export", "--to", str(a_file), *flags])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1 and "not one" in lines[0], res.output
    assert a_file.read_text() == "not a folder"


@pytest.mark.slow
def test_export_never_writes_through_a_link_inside_its_folder(fx, tmp_path):
    exp, outside = tmp_path / "exp", tmp_path / "outside"
    outside.mkdir()
    exp.mkdir()
    victim = outside / "victim.parquet"
    victim.write_bytes(b"precious")
    (exp / "takes.parquet").symlink_to(victim)
    export(fx, exp, overwrite=True)
    assert victim.read_bytes() == b"precious" and not (exp / "takes.parquet").is_symlink()
    assert duckdb.execute(f"SELECT count(*) FROM '{exp / 'takes.parquet'}'").fetchone()[0] == 11
    (exp / "views").rename(tmp_path / "old-views")
    (exp / "views").symlink_to(outside)
    runs = (exp / "runs.parquet").read_bytes()
    with pytest.raises(ShipskipError) as e:
        export(fx, exp, overwrite=True)
    assert "outside" in str(e.value)
    assert sorted(p.name for p in outside.iterdir()) == ["victim.parquet"]
    assert (exp / "runs.parquet").read_bytes() == runs  # nothing moved: all or none
    assert not [p for p in exp.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_the_cookbook_in_docs_analytics_runs_as_written(fx):
    """Every example query under 'Example queries' in docs/analytics.md runs on a real store."""
    from shipskip.analytics import run_sql

    text = (ROOT / "docs" / "analytics.md").read_text()
    section = text.split("## Example queries", 1)[1].split("\n## ", 1)[0]
    queries, block = [], []
    for line in section.splitlines() + [""]:
        if line.startswith("    "):
            block.append(line.strip())
        elif block:
            queries.append(" ".join(block))
            block = []
    queries = [q for q in queries if q.upper().startswith(("SELECT", "WITH"))]
    assert len(queries) >= 4
    for q in queries:
        res = run_sql(fx, q.rstrip(";"))
        assert res.columns, q


@pytest.mark.slow
def test_trends_marks_the_partial_week_shows_n_and_writes_where_asked(fx, isolated, monkeypatch):
    from typer.testing import CliRunner

    from shipskip.cli import app

    monkeypatch.chdir(isolated)
    res = CliRunner().invoke(app, ["trends", "--out", "reports/t.html"])
    assert res.exit_code == 0, res.output
    page = (isolated / "reports" / "t.html").read_text()
    assert 'id="weekly"' in page and "Scored takes (n)" in page
    assert "partial week" not in page  # the fixture's weeks are over
    review(fx, make_card(slug="gamma", name="Gamma", category="Video"), [60, 60, 60, 60, 60], datetime.now())
    assert CliRunner().invoke(app, ["trends", "--out", "reports/t.html"]).exit_code == 0
    assert "partial week" in (isolated / "reports" / "t.html").read_text()
    assert not (isolated / "out" / "trends.html").exists()
    assert CliRunner().invoke(app, ["trends", "--out", "/tmp/elsewhere.html"]).exit_code == 2
    nobody = CliRunner().invoke(app, ["trends", "--persona", "nobody"])
    assert nobody.exit_code == 2 and "nobody" in nobody.output and "is not one of" in nobody.output


def test_trends_say_how_many_of_a_seats_takes_did_not_count(store):
    for i in range(2):
        card = make_card(slug=f"nc{i}", name=f"Nc{i}")
        takes = [make_take(p, "ship", 70) for p in ("builder", "skeptic", "futurist")]
        takes[2] = takes[2].model_copy(
            update={"counted": False, "not_counted_reason": "not counted: no signal"}
        )
        store.commit_review(store.begin_run(card), card, takes)
    summary = {s["persona"]: s for s in trend_summary(trend_points(store))}
    assert summary["futurist"]["not_counted"] == 2 and summary["builder"]["not_counted"] == 0
    # The seat's own figures still read its takes: not counting is the panel's business.
    assert summary["futurist"]["ship_rate"] == 1.0
    html = trends_page(trend_points(store), list(summary.values()), "all", date(2026, 11, 24))
    assert "2 not counted" in html
