-- A take whose text was composed from the seat's checklist (take_checks.compose_take), because
-- every take the model wrote stated what its card does not say. Pages and `shipskip show`
-- mark it "composed from the checklist"; its verdict and score are the seat's own.
ALTER TABLE takes ADD COLUMN composed BOOLEAN DEFAULT false;
