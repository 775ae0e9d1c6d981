-- One vote per voter per tool, changeable. Votes cast before voters were recorded keep a
-- voter name of their own each, so none of them is merged away.
ALTER TABLE votes ADD COLUMN voter VARCHAR;
UPDATE votes SET voter = 'earlier-vote-' || CAST(rowid AS VARCHAR);
ALTER TABLE votes ADD COLUMN updated_at TIMESTAMP;
UPDATE votes SET updated_at = created_at;
CREATE UNIQUE INDEX votes_slug_voter ON votes (slug, voter);
