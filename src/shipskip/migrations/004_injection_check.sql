-- The score a persona gave once steering sentences were removed from the card, when there were any.
ALTER TABLE takes ADD COLUMN clean_score INTEGER;
