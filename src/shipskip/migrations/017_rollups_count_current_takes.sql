-- The per-persona rollups count what they say: each tool's current take per seat, in the week
-- that take was made. Before, they read every version, so a seat rerun three times counted
-- four times. The history of every version stays under names that say so (`_all_versions`),
-- with the definitions 013 and 015 gave the old names.
CREATE OR REPLACE VIEW persona_weekly_all_versions AS
SELECT persona, week,
    count(*) AS takes,
    count(score) AS scored,
    round(avg(score), 2) AS mean_score,
    round(count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0), 4) AS ship_rate
FROM takes_by_week
GROUP BY persona, week;

CREATE OR REPLACE VIEW persona_category_all_versions AS
SELECT persona, category,
    count(*) AS takes,
    count(score) AS scored,
    round(avg(score), 2) AS mean_score,
    round(count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0), 4) AS ship_rate
FROM takes_enriched
GROUP BY persona, category;

CREATE OR REPLACE VIEW persona_model_weekly_all_versions AS
SELECT persona, model, week,
    count(score) AS scored,
    round(avg(score), 2) AS mean_score,
    round(count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0), 4) AS ship_rate
FROM takes_by_week
GROUP BY persona, model, week;

-- Current takes with their week, and with the category of the card version they judged: the
-- same columns as takes_by_week and takes_enriched, one row per tool and seat. They read the
-- `is_current` takes (011), a quarter of the rows at 10M takes, with no ranking at query time.
CREATE OR REPLACE VIEW current_takes_by_week AS
SELECT t.*, CAST(date_trunc('week', t.created_at) AS DATE) AS week
FROM current_takes t;

CREATE OR REPLACE VIEW current_takes_enriched AS
SELECT
    t.*,
    coalesce(v.category, 'Uncategorised') AS category,
    CAST(date_trunc('week', t.created_at) AS DATE) AS week
FROM current_takes t
LEFT JOIN (
    SELECT slug, content_hash, json_extract_string(card, '$.category') AS category FROM tool_versions
) v USING (slug, content_hash);

CREATE OR REPLACE VIEW persona_weekly AS
SELECT persona, week,
    count(*) AS takes,
    count(score) AS scored,
    round(avg(score), 2) AS mean_score,
    round(count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0), 4) AS ship_rate
FROM current_takes_by_week
GROUP BY persona, week;

CREATE OR REPLACE VIEW persona_category AS
SELECT persona, category,
    count(*) AS takes,
    count(score) AS scored,
    round(avg(score), 2) AS mean_score,
    round(count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0), 4) AS ship_rate
FROM current_takes_enriched
GROUP BY persona, category;

CREATE OR REPLACE VIEW persona_model_weekly AS
SELECT persona, model, week,
    count(score) AS scored,
    round(avg(score), 2) AS mean_score,
    round(count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0), 4) AS ship_rate
FROM current_takes_by_week
GROUP BY persona, model, week;
