-- Prices per million tokens, so cost can be read off tokens. Unknown models cost NULL.
CREATE TABLE model_prices (
    model                  VARCHAR PRIMARY KEY,
    usd_per_mtok_prompt     DOUBLE NOT NULL,
    usd_per_mtok_completion DOUBLE NOT NULL
);
INSERT INTO model_prices VALUES ('SmolLM2-135M-Instruct', 0, 0);

-- Every committed take with the category of the card it judged and its ISO week.
CREATE VIEW takes_enriched AS
SELECT
    t.*,
    coalesce(json_extract_string(v.card, '$.category'), 'Uncategorised') AS category,
    CAST(date_trunc('week', t.created_at) AS DATE) AS week
FROM committed_takes t
LEFT JOIN tool_versions v USING (slug, content_hash);

CREATE VIEW persona_weekly AS
SELECT persona, week,
    count(*) AS takes,
    count(score) AS scored,
    round(avg(score), 2) AS mean_score,
    round(count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0), 4) AS ship_rate
FROM takes_enriched
GROUP BY persona, week;

CREATE VIEW persona_category AS
SELECT persona, category,
    count(*) AS takes,
    count(score) AS scored,
    round(avg(score), 2) AS mean_score,
    round(count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0), 4) AS ship_rate
FROM takes_enriched
GROUP BY persona, category;

CREATE VIEW persona_model_weekly AS
SELECT persona, model, week,
    count(score) AS scored,
    round(avg(score), 2) AS mean_score,
    round(count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0), 4) AS ship_rate
FROM takes_enriched
GROUP BY persona, model, week;

-- Scores in buckets of ten (90-100 is one bucket), current takes only.
CREATE VIEW score_distribution AS
SELECT persona, least(score // 10, 9) * 10 AS bucket, count(*) AS takes
FROM current_takes
WHERE score IS NOT NULL
GROUP BY persona, bucket;

CREATE VIEW persona_disagreement AS
SELECT slug,
    count(score) AS scored,
    max(score) - min(score) AS spread,
    arg_max(persona, score) AS highest,
    arg_min(persona, score) AS lowest,
    round(stddev_pop(score), 2) AS stddev
FROM current_takes
WHERE score IS NOT NULL
GROUP BY slug;

-- How each take moved from its previous version: reruns, model or prompt changes.
CREATE VIEW take_changes AS
SELECT * FROM (
    SELECT t.slug, t.persona, t.version,
        lag(t.score) OVER w AS prev_score, t.score,
        t.score - lag(t.score) OVER w AS delta,
        lag(t.verdict) OVER w AS prev_verdict, t.verdict,
        lag(t.model) OVER w AS prev_model, t.model,
        lag(t.prompt_version) OVER w AS prev_prompt_version, t.prompt_version,
        r.kind, r.reason, t.created_at
    FROM committed_takes t JOIN runs r USING (run_id)
    WINDOW w AS (PARTITION BY t.slug, t.persona ORDER BY t.version)
) WHERE version > 1;

CREATE VIEW run_costs AS
SELECT r.run_id, r.slug, r.kind, r.started_at,
    count(*) AS takes,
    sum(t.attempts) AS attempts,
    sum(t.prompt_tokens) AS prompt_tokens,
    sum(t.completion_tokens) AS completion_tokens,
    sum(t.cached_tokens) AS cached_tokens,
    round(sum((t.prompt_tokens * p.usd_per_mtok_prompt
              + t.completion_tokens * p.usd_per_mtok_completion) / 1e6), 6) AS cost_usd
FROM runs r JOIN takes t USING (run_id) LEFT JOIN model_prices p USING (model)
WHERE r.status = 'complete'
GROUP BY ALL;

CREATE VIEW model_costs AS
SELECT t.model,
    count(*) AS takes,
    sum(t.attempts) AS attempts,
    sum(t.prompt_tokens) AS prompt_tokens,
    sum(t.completion_tokens) AS completion_tokens,
    round(sum((t.prompt_tokens * p.usd_per_mtok_prompt
              + t.completion_tokens * p.usd_per_mtok_completion) / 1e6), 6) AS cost_usd
FROM committed_takes t LEFT JOIN model_prices p USING (model)
GROUP BY t.model;
