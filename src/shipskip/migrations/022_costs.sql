-- Money per take, review, seat, model and day. Prices come from a file the user edits
-- (SHIPSKIP_PRICES_PATH, over the dated ones shipped in the package), loaded into
-- model_prices by `shipskip.costs`; cached input has a price of its own, and each row says
-- from when its prices are. A take's tokens already count its failed attempts.
ALTER TABLE model_prices ADD COLUMN usd_per_mtok_cached DOUBLE;
ALTER TABLE model_prices ADD COLUMN as_of DATE;

-- The price row of each model a take names: its own, or that of the model without a dated
-- suffix (a provider reports gpt-4o-mini as gpt-4o-mini-2024-07-18). Read once per model.
CREATE OR REPLACE VIEW take_prices AS
SELECT m.model, p.usd_per_mtok_prompt, p.usd_per_mtok_cached, p.usd_per_mtok_completion, p.as_of
FROM (SELECT DISTINCT model FROM takes) m
JOIN model_prices p
  ON p.model = m.model OR p.model = regexp_replace(m.model, '-[0-9]{4}-?[0-9]{2}-?[0-9]{2}$', '')
QUALIFY row_number() OVER (PARTITION BY m.model ORDER BY p.model = m.model DESC) = 1;

-- Every take with what it cost: uncached input, cached input (at its own price, else the
-- input price) and output. cost_usd is NULL for a model with no price: unpriced, not free.
CREATE OR REPLACE VIEW take_costs AS
SELECT t.take_id, t.run_id, t.slug, t.persona, t.model, t.attempts,
    t.prompt_tokens, t.cached_tokens, t.completion_tokens, t.created_at,
    p.model IS NOT NULL AS priced,
    round(((t.prompt_tokens - t.cached_tokens) * p.usd_per_mtok_prompt
           + t.cached_tokens * coalesce(p.usd_per_mtok_cached, p.usd_per_mtok_prompt)
           + t.completion_tokens * p.usd_per_mtok_completion) / 1e6, 9) AS cost_usd
FROM takes t LEFT JOIN take_prices p USING (model);

-- Per review or rerun. cost_usd sums the priced takes; unpriced_takes says how many are not in it.
CREATE OR REPLACE VIEW cost_per_review AS
SELECT r.run_id, r.slug, r.kind, r.started_at, c.takes, c.attempts, c.prompt_tokens, c.cached_tokens,
    c.completion_tokens, c.cost_usd, c.unpriced_takes
FROM runs r JOIN (
    SELECT run_id, count(*) AS takes, sum(attempts) AS attempts, sum(prompt_tokens) AS prompt_tokens,
        sum(cached_tokens) AS cached_tokens, sum(completion_tokens) AS completion_tokens,
        round(sum(cost_usd), 9) AS cost_usd, count(*) FILTER (WHERE NOT priced) AS unpriced_takes
    FROM take_costs GROUP BY run_id
) c USING (run_id);

CREATE OR REPLACE VIEW cost_per_persona AS
SELECT persona, count(*) AS takes, sum(attempts) AS attempts, sum(prompt_tokens) AS prompt_tokens,
    sum(cached_tokens) AS cached_tokens, sum(completion_tokens) AS completion_tokens,
    round(sum(cost_usd), 9) AS cost_usd, count(*) FILTER (WHERE NOT priced) AS unpriced_takes
FROM take_costs GROUP BY persona;

CREATE OR REPLACE VIEW cost_per_model AS
SELECT c.model, count(*) AS takes, sum(c.attempts) AS attempts, sum(c.prompt_tokens) AS prompt_tokens,
    sum(c.cached_tokens) AS cached_tokens, sum(c.completion_tokens) AS completion_tokens,
    round(sum(c.cost_usd), 9) AS cost_usd, bool_and(c.priced) AS priced, any_value(p.as_of) AS prices_as_of
FROM take_costs c LEFT JOIN take_prices p USING (model)
GROUP BY c.model;

CREATE OR REPLACE VIEW cost_daily AS
SELECT CAST(created_at AS DATE) AS day, count(DISTINCT run_id) AS runs, count(*) AS takes,
    sum(attempts) AS attempts, sum(prompt_tokens) AS prompt_tokens, sum(cached_tokens) AS cached_tokens,
    sum(completion_tokens) AS completion_tokens, round(sum(cost_usd), 9) AS cost_usd,
    count(*) FILTER (WHERE NOT priced) AS unpriced_takes
FROM take_costs GROUP BY day;

-- The older per-run and per-model views, priced the same way (cached input at its own price).
CREATE OR REPLACE VIEW run_costs AS
SELECT r.run_id, r.slug, r.kind, r.started_at,
    t.takes, t.attempts, t.prompt_tokens, t.completion_tokens, t.cached_tokens, t.cost_usd
FROM runs r JOIN (
    SELECT run_id, count(*) AS takes, sum(attempts) AS attempts, sum(prompt_tokens) AS prompt_tokens,
        sum(completion_tokens) AS completion_tokens, sum(cached_tokens) AS cached_tokens,
        round(sum(cost_usd), 6) AS cost_usd
    FROM take_costs GROUP BY run_id
) t USING (run_id)
WHERE r.status = 'complete';

CREATE OR REPLACE VIEW model_costs AS
SELECT model, count(*) AS takes, sum(attempts) AS attempts, sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens, round(sum(cost_usd), 6) AS cost_usd
FROM take_costs GROUP BY model;
