-- A take belongs to its run once: a retried commit can never store a persona twice.
CREATE UNIQUE INDEX takes_run_persona ON takes (run_id, persona);

-- Reruns that failed. The failed attempt is never a take (the good take stays current), but
-- editors and analysts still see that it was tried, when, why, and what went wrong.
CREATE TABLE failed_reruns (
    run_id            VARCHAR PRIMARY KEY,
    slug              VARCHAR NOT NULL,
    persona           VARCHAR NOT NULL,
    reason            VARCHAR,
    error             VARCHAR NOT NULL,
    model             VARCHAR NOT NULL,
    prompt_version    VARCHAR NOT NULL,
    prompt_hash       VARCHAR NOT NULL,
    attempts          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    started_at        TIMESTAMP NOT NULL,
    created_at        TIMESTAMP NOT NULL
);
