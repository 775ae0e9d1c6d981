-- A seat counts in the panel only where its persona carries signal on the model that answered
-- (its out-of-fold kappa in that model's calibration at least SHIPSKIP_COUNT_KAPPA_MIN): the
-- take says whether it counted and why not, so views need no Python. `p_ship` is the seat's
-- chance of a "ship" call at its score, on the calibration's out-of-fold ship curve.
-- Takes stored before this counted, as they did then. The column with a default is added
-- last: duckdb 1.5 refuses to commit another ALTER after one that fills a default into
-- existing rows, in the same transaction.
ALTER TABLE takes ADD COLUMN not_counted_reason VARCHAR;
ALTER TABLE takes ADD COLUMN p_ship DOUBLE;
ALTER TABLE takes ADD COLUMN counted BOOLEAN DEFAULT true;

-- panel_verdicts as in 019 (same rule as panel.aggregate): a seat counts when it spoke, was
-- not flagged and carries signal; fewer than two counted seats is "No verdict". flip_chance
-- is the chance the label would come out otherwise were each counted seat's call drawn with
-- its p_ship: exact, summed over every combination of calls (2^n, n at most the seats); NULL
-- where a counted seat has no p_ship or there is no verdict.
CREATE OR REPLACE VIEW panel_verdicts AS
WITH seats AS (
    SELECT *,
        verdict IS NOT NULL AND NOT suspicious AND coalesce(counted, true) AS counts
    FROM current_takes
),
panels AS (
    SELECT
        slug,
        count(*) FILTER (WHERE counts AND verdict = 'ship') AS ship,
        count(*) FILTER (WHERE counts AND verdict = 'skip') AS skip,
        count(*) FILTER (WHERE verdict IS NULL) AS abstain,
        count(*) FILTER (WHERE verdict IS NOT NULL AND suspicious) AS flagged,
        count(*) FILTER (WHERE verdict IS NOT NULL AND NOT suspicious AND NOT coalesce(counted, true))
            AS not_counted,
        count(*) FILTER (WHERE counts AND p_ship IS NULL) AS unknown_p,
        max(created_at) AS reviewed_at,
        CASE WHEN bool_or(coalesce(uncalibrated, false)) THEN 'uncalibrated for ' || array_to_string(
            list_sort(list_distinct(list(model) FILTER (WHERE uncalibrated))), ', ')
        END AS calibration_note
    FROM seats
    GROUP BY slug
),
labelled AS (
    SELECT *,
        CASE WHEN ship + skip < 2 THEN 'No verdict'
             WHEN ship > skip THEN 'Ship'
             WHEN ship < skip THEN 'Skip'
             ELSE 'Mixed'
        END AS label
    FROM panels
),
counted_seats AS (
    SELECT slug, p_ship, row_number() OVER (PARTITION BY slug ORDER BY persona) - 1 AS seat
    FROM seats WHERE counts
),
calls AS (
    -- One row per combination of calls (bit `seat` of `combo` set: that seat ships).
    SELECT c.slug, m.combo,
        product(CASE WHEN (m.combo >> c.seat) & 1 = 1 THEN c.p_ship ELSE 1 - c.p_ship END) AS chance,
        sum(CAST((m.combo >> c.seat) & 1 AS INTEGER)) AS ships,
        count(*) AS seats
    FROM counted_seats c
    JOIN labelled l USING (slug)
    CROSS JOIN LATERAL (SELECT range AS combo FROM range(CAST(pow(2, l.ship + l.skip) AS BIGINT))) m
    WHERE l.label <> 'No verdict' AND l.unknown_p = 0
    GROUP BY c.slug, m.combo
),
flips AS (
    SELECT calls.slug,
        round(coalesce(sum(chance) FILTER (WHERE
            CASE WHEN ships + ships < seats THEN 'Skip'
                 WHEN ships + ships > seats THEN 'Ship'
                 ELSE 'Mixed' END <> l.label), 0), 4) AS flip_chance
    FROM calls JOIN labelled l USING (slug)
    GROUP BY calls.slug
)
SELECT
    l.slug, l.ship, l.skip, l.abstain, l.flagged,
    CASE WHEN l.label = 'No verdict' THEN NULL
         ELSE CAST(floor(100.0 * l.ship / (l.ship + l.skip) + 0.5) AS INTEGER)
    END AS ship_pct,
    l.label, l.reviewed_at, l.calibration_note, l.not_counted, f.flip_chance
FROM labelled l LEFT JOIN flips f USING (slug);
