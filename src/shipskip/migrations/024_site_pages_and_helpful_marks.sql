-- What each published page was last built from: a digest of its inputs (the stored rows it
-- shows, the site URL, the templates), so `shipskip site` and the flows rewrite only the pages
-- whose inputs changed, and know which files belong to tools no longer in the store.
-- Keyed by the output folder as well, since each SHIPSKIP_OUT_DIR is a site of its own.
CREATE TABLE page_digests (
    out_dir VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    digest VARCHAR NOT NULL,
    written_at TIMESTAMP NOT NULL,
    PRIMARY KEY (out_dir, path)
);

-- Readers' "Helpful?" marks on a take, from `shipskip web`: one per reader per seat of a tool
-- (the seat's current take is the one marked), as votes are one per voter per tool.
CREATE TABLE helpful_marks (
    slug VARCHAR NOT NULL,
    persona VARCHAR NOT NULL,
    voter VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX helpful_marks_slug_persona_voter ON helpful_marks (slug, persona, voter);
