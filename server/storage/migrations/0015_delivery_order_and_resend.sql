-- Order per receiving inbox: an activity is not sent while an earlier one about the same
-- thing (a note's Create before its Update, a Follow before its Undo) still waits for that
-- inbox. Rows from before carry no key and are not ordered.
ALTER TABLE outbox_activities ADD COLUMN ordering_key TEXT;
CREATE INDEX outbox_activities_ordering ON outbox_activities (ordering_key)
    WHERE ordering_key IS NOT NULL;
-- An admin's resend gives held deliveries a new retry horizon from that moment.
ALTER TABLE deliveries ADD COLUMN resent_at INTEGER;
