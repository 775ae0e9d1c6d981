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
