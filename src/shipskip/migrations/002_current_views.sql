-- Takes that count: those of committed runs.
CREATE VIEW committed_takes AS
SELECT t.*
FROM takes t JOIN runs r USING (run_id)
WHERE r.status = 'complete';

-- The latest version of each persona's take on each tool.
CREATE VIEW current_takes AS
SELECT * EXCLUDE (rn) FROM (
    SELECT ct.*, row_number() OVER (PARTITION BY slug, persona ORDER BY version DESC) AS rn
    FROM committed_takes ct
) WHERE rn = 1;

-- The panel verdict of each tool, from its current takes, by the rule in panel.py.
CREATE VIEW panel_verdicts AS
SELECT
    slug,
    count(*) FILTER (WHERE verdict = 'ship') AS ship,
    count(*) FILTER (WHERE verdict = 'skip') AS skip,
    count(*) FILTER (WHERE verdict IS NULL) AS abstain,
    CASE WHEN count(verdict) = 0 THEN NULL
         ELSE CAST(floor(100.0 * count(*) FILTER (WHERE verdict = 'ship') / count(verdict) + 0.5) AS INTEGER)
    END AS ship_pct,
    CASE WHEN count(verdict) = 0 THEN 'No verdict'
         WHEN count(*) FILTER (WHERE verdict = 'ship') > count(*) FILTER (WHERE verdict = 'skip') THEN 'Ship'
         WHEN count(*) FILTER (WHERE verdict = 'ship') < count(*) FILTER (WHERE verdict = 'skip') THEN 'Skip'
         ELSE 'Mixed'
    END AS label,
    max(created_at) AS reviewed_at
FROM current_takes
GROUP BY slug;
