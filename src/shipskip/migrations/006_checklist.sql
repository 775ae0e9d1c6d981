-- Checklist grading: how each score was made, the relevance answer, and every criterion's
-- P(yes) and weight, so a score can be explained and weights refitted from stored answers.
ALTER TABLE takes ADD COLUMN scoring VARCHAR DEFAULT 'holistic';
ALTER TABLE takes ALTER COLUMN scoring SET NOT NULL;
ALTER TABLE takes ADD COLUMN relevance DOUBLE;
ALTER TABLE takes ADD COLUMN criteria JSON;
ALTER TABLE eval_items ADD COLUMN relevance DOUBLE;
ALTER TABLE eval_items ADD COLUMN criteria JSON;

-- One row per criterion of each committed take: what analysts group by.
CREATE VIEW take_criteria AS
SELECT take_id, slug, persona, version, model, prompt_version, created_at,
    c.id AS criterion, c.label, c.weight, c.p_yes, c.baseline, c.source, c.p_yes >= c.baseline AS met
FROM (
    SELECT *, unnest(from_json(criteria,
        '[{"id": "VARCHAR", "label": "VARCHAR", "weight": "DOUBLE", "p_yes": "DOUBLE", "source": "VARCHAR", "baseline": "DOUBLE"}]')) AS c
    FROM committed_takes
    WHERE criteria IS NOT NULL
);
