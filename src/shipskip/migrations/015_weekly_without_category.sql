-- The weekly rollups read takes_enriched, whose category join with every card version DuckDB
-- keeps in the plan even where nothing reads the category: at 10M takes persona_weekly and
-- the trends report took 0.9-1.3 s. `takes_by_week` is the committed takes with their week
-- alone (the same week as takes_enriched's); the weekly views and an unfiltered trend read it.
CREATE OR REPLACE VIEW takes_by_week AS
SELECT t.*, CAST(date_trunc('week', t.created_at) AS DATE) AS week
FROM committed_takes t;

CREATE OR REPLACE VIEW persona_weekly AS
SELECT persona, week,
    count(*) AS takes,
    count(score) AS scored,
    round(avg(score), 2) AS mean_score,
    round(count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0), 4) AS ship_rate
FROM takes_by_week
GROUP BY persona, week;

CREATE OR REPLACE VIEW persona_model_weekly AS
SELECT persona, model, week,
    count(score) AS scored,
    round(avg(score), 2) AS mean_score,
    round(count(*) FILTER (WHERE verdict = 'ship') / nullif(count(verdict), 0), 4) AS ship_rate
FROM takes_by_week
GROUP BY persona, model, week;
