-- Batch mode (SHIPSKIP_BATCH): the checklist questions of new tools go to a provider's Batch
-- API as one job. A job is recorded before it is submitted (by a key of ours, also sent as the
-- job's metadata), so a run killed between submitting and recording finds it again; each
-- question it carries is a row, so a later run collects the answers by custom_id, asks again
-- in the normal way those that failed or expired, and submits nothing twice.
CREATE TABLE llm_batches (
    batch_key    VARCHAR PRIMARY KEY,
    batch_id     VARCHAR,
    base_url     VARCHAR NOT NULL,
    model        VARCHAR NOT NULL,
    requests     INTEGER NOT NULL,
    status       VARCHAR NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    collected_at TIMESTAMP
);

CREATE TABLE batch_requests (
    custom_id         VARCHAR PRIMARY KEY,
    batch_key         VARCHAR NOT NULL,
    slug              VARCHAR NOT NULL,
    state             VARCHAR NOT NULL CHECK (state IN ('submitted', 'answered', 'failed')),
    p_yes             DOUBLE,
    source            VARCHAR,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    model             VARCHAR,
    error             VARCHAR,
    updated_at        TIMESTAMP NOT NULL
);

-- Of a take's tokens, those that went through a Batch API (priced at half).
ALTER TABLE takes ADD COLUMN batch_prompt_tokens INTEGER DEFAULT 0;
ALTER TABLE takes ADD COLUMN batch_completion_tokens INTEGER DEFAULT 0;

-- take_costs as in 022, with batch tokens at half the model's price (the Batch API's discount);
-- a lake's takes from before this have NULL batch columns, read as 0.
CREATE OR REPLACE VIEW take_costs AS
SELECT t.take_id, t.run_id, t.slug, t.persona, t.model, t.attempts,
    t.prompt_tokens, t.cached_tokens, t.completion_tokens, t.created_at,
    p.model IS NOT NULL AS priced,
    round(((t.prompt_tokens - coalesce(t.batch_prompt_tokens, 0) - t.cached_tokens) * p.usd_per_mtok_prompt
           + t.cached_tokens * coalesce(p.usd_per_mtok_cached, p.usd_per_mtok_prompt)
           + (t.completion_tokens - coalesce(t.batch_completion_tokens, 0)) * p.usd_per_mtok_completion
           + 0.5 * (coalesce(t.batch_prompt_tokens, 0) * p.usd_per_mtok_prompt
                    + coalesce(t.batch_completion_tokens, 0) * p.usd_per_mtok_completion)) / 1e6, 9) AS cost_usd
FROM takes t LEFT JOIN take_prices p USING (model);
