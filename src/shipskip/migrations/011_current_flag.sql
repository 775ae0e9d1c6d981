-- The current take of each persona on each tool is marked when its review commits, so views
-- filter for it instead of ranking every take of every tool at query time (at 10M takes the
-- ranking alone cost most of a second per view). Exactly one committed take per tool and
-- persona is current; the store keeps it so in the transaction that commits a review.
-- DuckDB refuses to alter a table an index depends on: the index is set aside and rebuilt.
DROP INDEX takes_run_persona;
ALTER TABLE takes ADD COLUMN is_current BOOLEAN DEFAULT false;
-- (Under a new name: duckdb 1.5 refuses to reuse a name dropped in the same transaction.)
CREATE UNIQUE INDEX takes_one_per_run_seat ON takes (run_id, persona);
UPDATE takes SET is_current = true WHERE take_id IN (SELECT take_id FROM current_takes);
CREATE OR REPLACE VIEW current_takes AS
SELECT * EXCLUDE (is_current) FROM takes WHERE is_current;
