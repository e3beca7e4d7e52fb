-- Boosts take a place in home and profile feeds: each gets a feed position from the same
-- time-sortable sequence as post ids (see posts.next_feed_id), so one cursor pages through
-- posts and boosts together. Older boosts are placed by their time (ms * 4096), in the upper
-- half of that millisecond so they do not collide with a post id of the same moment.
ALTER TABLE announces ADD COLUMN feed_id INTEGER;
UPDATE announces SET feed_id = (created_at << 12) + 2048 + (id % 2048);
CREATE INDEX announces_by_actor ON announces (actor_id, feed_id);
CREATE INDEX announces_by_feed ON announces (feed_id);
