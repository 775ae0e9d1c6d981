-- Quality signals per take: grounding, and self-consistency when k samples were drawn.
-- (DEFAULT, then SET NOT NULL: the duckdb line DuckLake pins refuses both in one ADD COLUMN.)
ALTER TABLE takes ADD COLUMN grounded BOOLEAN;
ALTER TABLE takes ADD COLUMN samples INTEGER DEFAULT 1;
ALTER TABLE takes ALTER COLUMN samples SET NOT NULL;
ALTER TABLE takes ADD COLUMN score_spread INTEGER;
ALTER TABLE takes ADD COLUMN verdict_flips DOUBLE DEFAULT 0;
ALTER TABLE takes ALTER COLUMN verdict_flips SET NOT NULL;

-- Evaluation runs against a labelled reference set, so prompt or model changes can be compared.
CREATE TABLE eval_runs (
    eval_id      VARCHAR PRIMARY KEY,
    reference    VARCHAR NOT NULL,
    model        VARCHAR NOT NULL,
    prompt_hash  VARCHAR NOT NULL,
    samples      INTEGER NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    summary      JSON NOT NULL
);

CREATE TABLE eval_items (
    eval_id         VARCHAR NOT NULL,
    slug            VARCHAR NOT NULL,
    persona         VARCHAR NOT NULL,
    ref_verdict     VARCHAR,
    ref_score       INTEGER,
    verdict         VARCHAR,
    score           INTEGER,
    first_attempt_valid BOOLEAN NOT NULL,
    grounded        BOOLEAN,
    verdict_flips   DOUBLE NOT NULL,
    score_spread    INTEGER,
    take            VARCHAR
);
