-- A take is written only in the transaction that completes its run (Store.commit_review), and
-- a bulk load refuses takes whose run is not complete (Store.load_parquet): the takes table
-- holds committed takes alone. So committed_takes no longer joins runs to filter them; at
-- 10M takes that join was most of what the per-category, weekly and trend views cost
-- (persona_category 1.3 s with it, 0.56 s without, bench/analytics_bench.py).
CREATE OR REPLACE VIEW committed_takes AS
SELECT * FROM takes;
