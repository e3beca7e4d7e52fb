-- Queries on the hot paths must not grow with the archive (rows are never deleted):
-- the inbound dispatcher claims pending rows in arrival order without walking past every
-- applied one (it did: 250 ms per claim at 200,000 applied rows, inside the write lock);
-- a post's hashtags are read and replaced by post id (the primary key starts with the tag);
-- the admin's delivery health counts every state but the delivered archive.
CREATE INDEX inbox_activities_queue ON inbox_activities (id) WHERE state = 'pending';
CREATE INDEX post_tags_post ON post_tags (post_id);
CREATE INDEX deliveries_open ON deliveries (state, host, attempts)
    WHERE state IN ('queued', 'held', 'dead', 'cancelled');
