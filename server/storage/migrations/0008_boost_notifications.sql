-- People are told when their post is boosted (as on Mastodon). SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt with the same rows, ids and indexes; no table
-- references notifications, and the migration runs in one transaction.
CREATE TABLE notifications_rebuilt (
    id INTEGER PRIMARY KEY,
    recipient_id INTEGER NOT NULL REFERENCES actors (id),
    kind TEXT NOT NULL
        CHECK (kind IN ('follow', 'follow_request', 'mention', 'reply', 'like', 'wall', 'boost')),
    actor_id INTEGER NOT NULL REFERENCES actors (id),
    post_id INTEGER REFERENCES posts (id),
    created_at INTEGER NOT NULL,
    read_at INTEGER
);
INSERT INTO notifications_rebuilt (id, recipient_id, kind, actor_id, post_id, created_at, read_at)
    SELECT id, recipient_id, kind, actor_id, post_id, created_at, read_at FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_rebuilt RENAME TO notifications;
CREATE INDEX notifications_recipient ON notifications (recipient_id, id);
CREATE INDEX notifications_unread ON notifications (recipient_id) WHERE read_at IS NULL;
