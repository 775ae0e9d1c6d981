-- Editors' own calls on a seat (`shipskip label`). Append-only: a new label from the same
-- editor on the same seat supersedes the earlier one, which stays here as history.
-- `take_id` is the take the editor judged (the seat's current take then): its stored
-- checklist answers are what `calibrate --with-labels` fits the label against.
CREATE TABLE labels (
    label_id   VARCHAR PRIMARY KEY,
    slug       VARCHAR NOT NULL,
    persona    VARCHAR NOT NULL,
    editor     VARCHAR NOT NULL,
    verdict    VARCHAR NOT NULL CHECK (verdict IN ('ship', 'skip', 'abstain')),
    score      INTEGER CHECK (score BETWEEN 0 AND 100),
    reason     VARCHAR NOT NULL,
    take_id    VARCHAR,
    created_at TIMESTAMP NOT NULL
);

-- Each editor's latest label per seat (ties, which one clock cannot tell apart, go to the id).
CREATE VIEW current_labels AS
SELECT * EXCLUDE (rn) FROM (
    SELECT *, row_number() OVER (
        PARTITION BY slug, persona, editor ORDER BY created_at DESC, label_id DESC
    ) AS rn
    FROM labels
)
WHERE rn = 1;

-- How well the panel's seats agree with the editors, per persona, model and month of the
-- judged take, so a change of model shows as drift. One pair per editor's current label and
-- the take it judged; an abstaining take counts as the verdict 'abstain'. Cohen's kappa over
-- the three calls is 1 where every pair is the same single call, as `quality.cohen_kappa`.
CREATE VIEW judge_alignment AS
WITH pairs AS (
    SELECT l.persona, t.model, CAST(date_trunc('month', t.created_at) AS DATE) AS month,
           l.verdict AS editor_call, coalesce(t.verdict, 'abstain') AS panel_call
    FROM current_labels l
    JOIN takes t ON t.take_id = l.take_id
),
counts AS (
    SELECT persona, model, month,
           count(*) AS labels,
           count(*) FILTER (WHERE editor_call = panel_call) AS agreed,
           count(*) FILTER (WHERE editor_call = 'ship') AS editor_ship,
           count(*) FILTER (WHERE editor_call = 'skip') AS editor_skip,
           count(*) FILTER (WHERE editor_call = 'abstain') AS editor_abstain,
           count(*) FILTER (WHERE panel_call = 'ship') AS panel_ship,
           count(*) FILTER (WHERE panel_call = 'skip') AS panel_skip,
           count(*) FILTER (WHERE panel_call = 'abstain') AS panel_abstain
    FROM pairs
    GROUP BY persona, model, month
),
rates AS (
    SELECT *,
           agreed / labels::DOUBLE AS po,
           (editor_ship * panel_ship + editor_skip * panel_skip + editor_abstain * panel_abstain)
               / (labels::DOUBLE * labels) AS pe
    FROM counts
)
SELECT persona, model, month, labels, agreed,
       round(po, 3) AS agreement,
       CASE WHEN pe < 1 THEN round((po - pe) / (1 - pe), 3) WHEN po = 1 THEN 1.0 END AS kappa,
       editor_ship, editor_skip, editor_abstain, panel_ship, panel_skip, panel_abstain
FROM rates;
