-- Taking back a like or a boost takes back its notification (as on Mastodon); finding it by
-- post and actor must not walk the recipient's whole notification history.
CREATE INDEX notifications_post ON notifications (post_id, actor_id) WHERE post_id IS NOT NULL;
