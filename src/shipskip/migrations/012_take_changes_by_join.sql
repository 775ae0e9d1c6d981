-- Each take beside the one before it, found by a join on the previous version rather than a
-- window: duckdb 1.5 (the line the DuckLake packages pin) sorts 10M takes for the window in
-- 4.3 s; the join takes about half that. Versions of a tool's seat are consecutive among
-- committed takes (a take is written only in the transaction that completes its run), so
-- version - 1 is the take a window's lag() would have found.
CREATE OR REPLACE VIEW take_changes AS
WITH c AS (
    SELECT t.slug, t.persona, t.version, t.score, t.verdict, t.model, t.prompt_version,
        t.created_at, r.kind, r.reason
    FROM takes t JOIN runs r USING (run_id)
    WHERE r.status = 'complete'
)
SELECT t.slug, t.persona, t.version,
    p.score AS prev_score, t.score, t.score - p.score AS delta,
    p.verdict AS prev_verdict, t.verdict,
    p.model AS prev_model, t.model,
    p.prompt_version AS prev_prompt_version, t.prompt_version,
    t.kind, t.reason, t.created_at
FROM c t JOIN c p ON p.slug = t.slug AND p.persona = t.persona AND p.version = t.version - 1
WHERE t.version > 1;
