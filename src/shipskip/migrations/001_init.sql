-- Tools as last seen, and every version of a card the panel has read.
CREATE TABLE tools (
    slug         VARCHAR PRIMARY KEY,
    name         VARCHAR NOT NULL,
    tagline      VARCHAR NOT NULL,
    category     VARCHAR NOT NULL,
    pricing      VARCHAR NOT NULL,
    entry_tier   VARCHAR NOT NULL CHECK (entry_tier IN ('free', 'paid')),
    description  VARCHAR NOT NULL,
    source       VARCHAR NOT NULL DEFAULT '',
    url          VARCHAR NOT NULL DEFAULT '',
    launched     DATE,
    content_hash VARCHAR NOT NULL,
    first_seen   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL
);

CREATE TABLE tool_versions (
    slug         VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    card         JSON NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (slug, content_hash)
);

-- One row per review or rerun. Takes of a run count only once its status is 'complete'.
CREATE TABLE runs (
    run_id       VARCHAR PRIMARY KEY,
    slug         VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL CHECK (kind IN ('review', 'rerun')),
    status       VARCHAR NOT NULL CHECK (status IN ('running', 'complete')),
    reason       VARCHAR,
    flow_run_id  VARCHAR,
    started_at   TIMESTAMP NOT NULL,
    finished_at  TIMESTAMP,
    label        VARCHAR,
    ship         INTEGER,
    skip         INTEGER,
    abstain      INTEGER,
    ship_pct     INTEGER
);

-- Append-only: a rerun adds a row with a higher version; the old take stays as history.
CREATE TABLE takes (
    take_id           VARCHAR PRIMARY KEY,
    run_id            VARCHAR NOT NULL,
    slug              VARCHAR NOT NULL,
    content_hash      VARCHAR NOT NULL,
    persona           VARCHAR NOT NULL,
    version           INTEGER NOT NULL,
    verdict           VARCHAR CHECK (verdict IN ('ship', 'skip')),
    score             INTEGER CHECK (score BETWEEN 0 AND 100),
    take              VARCHAR,
    abstain_reason    VARCHAR,
    error             VARCHAR,
    model             VARCHAR NOT NULL,
    prompt_version    VARCHAR NOT NULL,
    prompt_hash       VARCHAR NOT NULL,
    temperature       DOUBLE NOT NULL,
    attempts          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    suspicious        BOOLEAN NOT NULL DEFAULT false,
    reason            VARCHAR,
    created_at        TIMESTAMP NOT NULL,
    CHECK ((verdict = 'ship' AND score >= 60) OR (verdict = 'skip' AND score < 60)
           OR (verdict IS NULL AND score IS NULL)),
    UNIQUE (slug, persona, version)
);

-- Takes finished before their review committed, so an interrupted run resumes without
-- asking the LLM again. Readers never look here.
CREATE TABLE take_checkpoints (
    run_id     VARCHAR NOT NULL,
    persona    VARCHAR NOT NULL,
    payload    JSON NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, persona)
);

CREATE TABLE votes (
    slug       VARCHAR NOT NULL,
    vote       VARCHAR NOT NULL CHECK (vote IN ('ship', 'skip')),
    created_at TIMESTAMP NOT NULL
);
