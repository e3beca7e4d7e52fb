-- Keeping order per inbox must stay one index lookup however long a queue grows: the key
-- moves onto the delivery rows, indexed over the queued ones only (0015 looked it up
-- through the outbox, walking every earlier activity with that key, delivered or not).
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
UPDATE deliveries SET ordering_key =
    (SELECT o.ordering_key FROM outbox_activities o WHERE o.id = deliveries.outbox_id)
    WHERE state = 'queued';
CREATE INDEX deliveries_ordering ON deliveries (inbox_url, ordering_key, outbox_id)
    WHERE state = 'queued' AND ordering_key IS NOT NULL;
DROP INDEX outbox_activities_ordering;
