-- Reply counts are counted for each reader at read time (only the replies they may open), so
-- the stored count goes: it could only be one number for everyone, and showed anonymous
-- readers that Internal or followers-only answers existed. The partial index finds a post's
-- replies; most posts are not replies, so it stays small.
CREATE INDEX posts_replies ON posts (in_reply_to_id) WHERE in_reply_to_id IS NOT NULL;
ALTER TABLE posts DROP COLUMN reply_count;
