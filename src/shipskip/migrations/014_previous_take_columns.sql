-- take_changes found the take before each one with a self-join of every take: at 10M takes
-- that cost 2.0-2.5 s and 2.8 GB on duckdb 1.5 (bench/analytics_bench.py). The store now
-- writes the previous version's score, verdict, model and prompt version beside each take
-- when its review commits (and fills them for loaded takes), so the view reads them off the
-- take. Versions of a tool's seat are consecutive, so the previous take is version - 1.
-- DuckDB refuses to alter a table an index depends on: the index is set aside and rebuilt,
-- under a new name (duckdb 1.5 refuses a name dropped in the same transaction).
DROP INDEX takes_one_per_run_seat;
ALTER TABLE takes ADD COLUMN prev_score INTEGER;
ALTER TABLE takes ADD COLUMN prev_verdict VARCHAR;
ALTER TABLE takes ADD COLUMN prev_model VARCHAR;
ALTER TABLE takes ADD COLUMN prev_prompt_version VARCHAR;
CREATE UNIQUE INDEX takes_seat_once_per_run ON takes (run_id, persona);
UPDATE takes SET prev_score = p.score, prev_verdict = p.verdict, prev_model = p.model,
    prev_prompt_version = p.prompt_version
FROM takes p
WHERE p.slug = takes.slug AND p.persona = takes.persona AND p.version = takes.version - 1
    AND takes.version > 1;

CREATE OR REPLACE VIEW current_takes AS
SELECT * EXCLUDE (is_current, prev_score, prev_verdict, prev_model, prev_prompt_version)
FROM takes WHERE is_current;

CREATE OR REPLACE VIEW take_changes AS
SELECT t.slug, t.persona, t.version,
    t.prev_score, t.score, t.score - t.prev_score AS delta,
    t.prev_verdict, t.verdict,
    t.prev_model, t.model,
    t.prev_prompt_version, t.prompt_version,
    r.kind, r.reason, t.created_at
FROM takes t JOIN runs r USING (run_id)
WHERE r.status = 'complete' AND t.version > 1;
