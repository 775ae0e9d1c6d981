-- Which calibration scored each take: calibrations are per model (shipskip.calibrations), and a
-- model with no fitted one is scored by a label-free correction that every reader is told of.
-- Takes stored before this were scored with the SmolLM2 weights then held in the persona files.
ALTER TABLE takes ADD COLUMN calibration VARCHAR;
ALTER TABLE takes ADD COLUMN uncalibrated BOOLEAN DEFAULT false;

-- panel_verdicts as in 009, with a note naming the models of its uncalibrated takes.
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
    max(created_at) AS reviewed_at,
    CASE WHEN bool_or(coalesce(uncalibrated, false)) THEN 'uncalibrated for ' || array_to_string(
        list_sort(list_distinct(list(model) FILTER (WHERE uncalibrated))), ', ')
    END AS calibration_note
FROM counted
GROUP BY slug;
