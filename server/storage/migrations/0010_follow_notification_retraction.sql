-- An unfollow, an Undo{Follow} or a refused request takes back the "followed you" or
-- "asked to follow you" notification (as on Mastodon), and an approved request turns into
-- "followed you". Only follow notifications have no post; finding one by its two people must
-- not walk the recipient's whole notification history.
CREATE INDEX notifications_follow ON notifications (recipient_id, actor_id) WHERE post_id IS NULL;
