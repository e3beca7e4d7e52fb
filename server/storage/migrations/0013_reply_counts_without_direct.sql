-- A post's reply count is shown to everyone who sees the post, so it no longer counts Direct
-- replies (as on Mastodon): a private answer to a public post must not show that it exists.
-- Followers replies are still counted, as there. Existing counts lose their Direct replies.
CREATE TEMP TABLE direct_replies AS
    SELECT in_reply_to_id AS id, count(*) AS n FROM posts
    WHERE visibility = 'direct' AND in_reply_to_id IS NOT NULL AND deleted_at IS NULL
    GROUP BY in_reply_to_id;
UPDATE posts SET reply_count = max(reply_count - (SELECT n FROM direct_replies d WHERE d.id = posts.id), 0)
    WHERE id IN (SELECT id FROM direct_replies);
DROP TABLE direct_replies;
