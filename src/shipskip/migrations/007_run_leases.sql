-- One writer per tool at a time: a running run names the process that holds it and when that
-- process last showed signs of life, so another process can tell a live run from a dead one.
ALTER TABLE runs ADD COLUMN owner VARCHAR;
ALTER TABLE runs ADD COLUMN heartbeat_at TIMESTAMP;
