-- A take flagged for prompt injection is shown on pages but not counted in the verdict,
-- the same rule as panel.aggregate; `flagged` says how many were left out.
CREATE OR REPLACE VIEW panel_verdicts AS
WITH counted AS (
    SELECT *, verdict IS NOT NULL AND NOT suspicious AS counts FROM current_takes
)
SELECT
    slug,
    count(*) FILTER (WHERE counts AND verdict = 'ship') AS ship,
    count(*) FILTER (WHERE counts AND verdict = 'skip') AS skip,
    count(*) FILTER (WHERE verdict IS NULL) AS abstain,
    count(*) FILTER (WHERE verdict IS NOT NULL AND suspicious) AS flagged,
    CASE WHEN count(*) FILTER (WHERE counts) = 0 THEN NULL
         ELSE CAST(floor(100.0 * count(*) FILTER (WHERE counts AND verdict = 'ship')
                         / count(*) FILTER (WHERE counts) + 0.5) AS INTEGER)
    END AS ship_pct,
    CASE WHEN count(*) FILTER (WHERE counts) = 0 THEN 'No verdict'
         WHEN count(*) FILTER (WHERE counts AND verdict = 'ship')
              > count(*) FILTER (WHERE counts AND verdict = 'skip') THEN 'Ship'
         WHEN count(*) FILTER (WHERE counts AND verdict = 'ship')
              < count(*) FILTER (WHERE counts AND verdict = 'skip') THEN 'Skip'
         ELSE 'Mixed'
    END AS label,
    max(created_at) AS reviewed_at
FROM counted
GROUP BY slug;
