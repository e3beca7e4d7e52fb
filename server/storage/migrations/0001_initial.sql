-- Steelyard initial schema: people, accounts, posts with full history, follows, likes,
-- notifications. Times are integer epoch milliseconds. Nothing is ever hard-deleted by the
-- application: deleted_at hides a row from users while the compliance archive keeps it.

CREATE TABLE actors (
    id INTEGER PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    is_local INTEGER NOT NULL CHECK (is_local IN (0, 1)),
    username TEXT NOT NULL,
    host TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    job_title TEXT NOT NULL DEFAULT '',
    department TEXT NOT NULL DEFAULT '',
    location TEXT NOT NULL DEFAULT '',
    contact TEXT NOT NULL DEFAULT '',
    bio_html TEXT NOT NULL DEFAULT '',
    avatar_file TEXT,
    avatar_url TEXT,
    profile_url TEXT,
    public_key_pem TEXT,
    manually_approves INTEGER NOT NULL DEFAULT 0,
    search_text TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER,
    UNIQUE (host, username)
);
CREATE INDEX actors_local_name ON actors (is_local, username);

CREATE TABLE accounts (
    actor_id INTEGER PRIMARY KEY REFERENCES actors (id),
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0,
    is_active INTEGER NOT NULL DEFAULT 1,
    session_epoch INTEGER NOT NULL DEFAULT 0,
    private_key_pem TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deactivated_at INTEGER
);

-- Every edit of a profile keeps the previous version (compliance).
CREATE TABLE profile_versions (
    id INTEGER PRIMARY KEY,
    actor_id INTEGER NOT NULL REFERENCES actors (id),
    data_json TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX profile_versions_actor ON profile_versions (actor_id, id);

CREATE TABLE follows (
    id INTEGER PRIMARY KEY,
    follower_id INTEGER NOT NULL REFERENCES actors (id),
    followee_id INTEGER NOT NULL REFERENCES actors (id),
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'frozen')),
    uri TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    UNIQUE (follower_id, followee_id)
);
CREATE INDEX follows_followee ON follows (followee_id, state);

-- Post ids are time-sortable (epoch ms * 4096 + sequence), assigned by the writer, so that
-- keyset paging on id is paging by time.
CREATE TABLE posts (
    id INTEGER PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    url TEXT,
    author_id INTEGER NOT NULL REFERENCES actors (id),
    visibility TEXT NOT NULL CHECK (visibility IN ('internal', 'followers', 'public', 'direct')),
    wall_owner_id INTEGER REFERENCES actors (id),
    in_reply_to_id INTEGER REFERENCES posts (id),
    in_reply_to_uri TEXT,
    thread_root_id INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    content_html TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    reply_count INTEGER NOT NULL DEFAULT 0,
    like_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    edited_at INTEGER,
    deleted_at INTEGER
);
CREATE INDEX posts_author ON posts (author_id, id);
CREATE INDEX posts_wall ON posts (wall_owner_id, id) WHERE wall_owner_id IS NOT NULL;
CREATE INDEX posts_thread ON posts (thread_root_id, id);

-- Every version of a post, the current one included: history and archive in one place.
CREATE TABLE post_versions (
    post_id INTEGER NOT NULL REFERENCES posts (id),
    version INTEGER NOT NULL,
    visibility TEXT NOT NULL,
    source TEXT NOT NULL,
    content_html TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (post_id, version)
) WITHOUT ROWID;

-- People a post is addressed to or mentions: a direct post is visible to exactly these.
CREATE TABLE post_recipients (
    post_id INTEGER NOT NULL REFERENCES posts (id),
    actor_id INTEGER NOT NULL REFERENCES actors (id),
    PRIMARY KEY (post_id, actor_id)
) WITHOUT ROWID;
CREATE INDEX post_recipients_actor ON post_recipients (actor_id, post_id);

CREATE TABLE post_tags (
    tag TEXT NOT NULL,
    post_id INTEGER NOT NULL REFERENCES posts (id),
    PRIMARY KEY (tag, post_id)
) WITHOUT ROWID;

CREATE TABLE likes (
    id INTEGER PRIMARY KEY,
    actor_id INTEGER NOT NULL REFERENCES actors (id),
    post_id INTEGER NOT NULL REFERENCES posts (id),
    uri TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    UNIQUE (post_id, actor_id)
);
CREATE INDEX likes_actor ON likes (actor_id, post_id);

CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    recipient_id INTEGER NOT NULL REFERENCES actors (id),
    kind TEXT NOT NULL
        CHECK (kind IN ('follow', 'follow_request', 'mention', 'reply', 'like', 'wall')),
    actor_id INTEGER NOT NULL REFERENCES actors (id),
    post_id INTEGER REFERENCES posts (id),
    created_at INTEGER NOT NULL,
    read_at INTEGER
);
CREATE INDEX notifications_recipient ON notifications (recipient_id, id);
CREATE INDEX notifications_unread ON notifications (recipient_id) WHERE read_at IS NULL;

-- Failed sign-ins per key (username or client address), for throttling across restarts.
CREATE TABLE login_failures (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_start INTEGER NOT NULL
) WITHOUT ROWID;

-- What admins did (account creation, deactivation, ...).
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor_id INTEGER REFERENCES actors (id),
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
