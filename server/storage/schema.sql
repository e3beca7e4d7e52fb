-- Generated from the migrations; tests/unit/test_schema.py checks it.
CREATE TABLE accounts (
    actor_id INTEGER PRIMARY KEY REFERENCES actors (id),
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0,
    is_active INTEGER NOT NULL DEFAULT 1,
    session_epoch INTEGER NOT NULL DEFAULT 0,
    private_key_pem TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deactivated_at INTEGER
, must_change_password INTEGER NOT NULL DEFAULT 0);

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
    deleted_at INTEGER, actor_type TEXT NOT NULL DEFAULT 'Person', inbox_url TEXT, shared_inbox_url TEXT, outbox_url TEXT, followers_url TEXT, following_url TEXT, key_id TEXT, fetched_at INTEGER, wall_url TEXT, handle_checked_at INTEGER,
    UNIQUE (host, username)
);

CREATE TABLE allowed_hosts (
    host TEXT PRIMARY KEY,
    relation TEXT NOT NULL CHECK (relation IN ('partner', 'supplier', 'customer')),
    note TEXT NOT NULL DEFAULT '',
    added_at INTEGER NOT NULL,
    added_by TEXT NOT NULL,
    removed_at INTEGER,
    removed_by TEXT
) WITHOUT ROWID;

CREATE TABLE announces (
    id INTEGER PRIMARY KEY,
    actor_id INTEGER NOT NULL REFERENCES actors (id),
    post_id INTEGER NOT NULL REFERENCES posts (id),
    uri TEXT UNIQUE,
    created_at INTEGER NOT NULL, feed_id INTEGER,
    UNIQUE (post_id, actor_id)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor_id INTEGER REFERENCES actors (id),
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    outbox_id INTEGER NOT NULL REFERENCES outbox_activities (id),
    inbox_url TEXT NOT NULL,
    host TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'delivered', 'dead', 'held', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER, resent_at INTEGER, ordering_key TEXT,
    UNIQUE (outbox_id, inbox_url)
);

CREATE TABLE follows (
    id INTEGER PRIMARY KEY,
    follower_id INTEGER NOT NULL REFERENCES actors (id),
    followee_id INTEGER NOT NULL REFERENCES actors (id),
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'frozen')),
    uri TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    UNIQUE (follower_id, followee_id)
);

CREATE TABLE host_health (
    host TEXT PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    circuit_open_until INTEGER NOT NULL DEFAULT 0,
    last_success_at INTEGER,
    last_failure_at INTEGER,
    last_error TEXT
, retry_after_until INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;

CREATE TABLE inbox_activities (
    id INTEGER PRIMARY KEY,
    activity_id TEXT NOT NULL UNIQUE,
    activity_type TEXT NOT NULL,
    actor_uri TEXT NOT NULL,
    origin_host TEXT NOT NULL,
    key_id TEXT NOT NULL,
    target TEXT NOT NULL,
    headers_json TEXT NOT NULL,
    body BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    processed_at INTEGER
, locked_until INTEGER NOT NULL DEFAULT 0);

CREATE TABLE instance_keys (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    private_key_pem TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE likes (
    id INTEGER PRIMARY KEY,
    actor_id INTEGER NOT NULL REFERENCES actors (id),
    post_id INTEGER NOT NULL REFERENCES posts (id),
    uri TEXT UNIQUE,
    created_at INTEGER NOT NULL, remote INTEGER NOT NULL DEFAULT 0,
    UNIQUE (post_id, actor_id)
);

CREATE TABLE login_failures (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_start INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE "notifications" (
    id INTEGER PRIMARY KEY,
    recipient_id INTEGER NOT NULL REFERENCES actors (id),
    kind TEXT NOT NULL
        CHECK (kind IN ('follow', 'follow_request', 'mention', 'reply', 'like', 'wall', 'boost')),
    actor_id INTEGER NOT NULL REFERENCES actors (id),
    post_id INTEGER REFERENCES posts (id),
    created_at INTEGER NOT NULL,
    read_at INTEGER
);

CREATE TABLE outbox_activities (
    id INTEGER PRIMARY KEY,
    activity_id TEXT NOT NULL UNIQUE,
    activity_type TEXT NOT NULL,
    actor_id INTEGER REFERENCES actors (id),
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
, ordering_key TEXT);

CREATE TABLE post_recipients (
    post_id INTEGER NOT NULL REFERENCES posts (id),
    actor_id INTEGER NOT NULL REFERENCES actors (id),
    PRIMARY KEY (post_id, actor_id)
) WITHOUT ROWID;

CREATE TABLE post_tags (
    tag TEXT NOT NULL,
    post_id INTEGER NOT NULL REFERENCES posts (id),
    PRIMARY KEY (tag, post_id)
) WITHOUT ROWID;

CREATE TABLE post_versions (
    post_id INTEGER NOT NULL REFERENCES posts (id),
    version INTEGER NOT NULL,
    visibility TEXT NOT NULL,
    source TEXT NOT NULL,
    content_html TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (post_id, version)
) WITHOUT ROWID;

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
    like_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    edited_at INTEGER,
    deleted_at INTEGER
, remote_updated_at INTEGER);

CREATE TABLE profile_versions (
    id INTEGER PRIMARY KEY,
    actor_id INTEGER NOT NULL REFERENCES actors (id),
    data_json TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE remote_keys (
    key_id TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    owner_uri TEXT NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, public_key_pem)
) WITHOUT ROWID;

CREATE TABLE revoked_sessions (
    sid TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE schema_migrations ( version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL);

CREATE TABLE "tombstones" (
    uri TEXT NOT NULL,
    actor_id INTEGER NOT NULL,
    deleted_at INTEGER NOT NULL,
    PRIMARY KEY (uri, actor_id)
) WITHOUT ROWID;

CREATE INDEX actors_followers_url ON actors (followers_url) WHERE followers_url IS NOT NULL;

CREATE INDEX actors_key_id ON actors (key_id) WHERE key_id IS NOT NULL;

CREATE INDEX actors_local_name ON actors (is_local, username);

CREATE INDEX announces_by_actor ON announces (actor_id, feed_id);

CREATE INDEX announces_by_feed ON announces (feed_id);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'queued';

CREATE INDEX deliveries_host ON deliveries (host, state);

CREATE INDEX deliveries_open ON deliveries (state, host, attempts)
    WHERE state IN ('queued', 'held', 'dead', 'cancelled');

CREATE INDEX deliveries_ordering ON deliveries (inbox_url, ordering_key, outbox_id)
    WHERE state = 'queued' AND ordering_key IS NOT NULL;

CREATE INDEX follows_followee ON follows (followee_id, state);

CREATE INDEX inbox_activities_pending ON inbox_activities (next_attempt_at)
    WHERE state = 'pending';

CREATE INDEX inbox_activities_queue ON inbox_activities (id) WHERE state = 'pending';

CREATE INDEX inbox_activities_trouble ON inbox_activities (id)
    WHERE state = 'failed' OR (state = 'pending' AND last_error IS NOT NULL);

CREATE INDEX likes_actor ON likes (actor_id, post_id);

CREATE INDEX notifications_follow ON notifications (recipient_id, actor_id) WHERE post_id IS NULL;

CREATE INDEX notifications_post ON notifications (post_id, actor_id) WHERE post_id IS NOT NULL;

CREATE INDEX notifications_recipient ON notifications (recipient_id, id);

CREATE INDEX notifications_unread ON notifications (recipient_id) WHERE read_at IS NULL;

CREATE INDEX post_recipients_actor ON post_recipients (actor_id, post_id);

CREATE INDEX post_tags_post ON post_tags (post_id);

CREATE INDEX posts_author ON posts (author_id, id);

CREATE INDEX posts_replies ON posts (in_reply_to_id) WHERE in_reply_to_id IS NOT NULL;

CREATE INDEX posts_thread ON posts (thread_root_id, id);

CREATE INDEX posts_wall ON posts (wall_owner_id, id) WHERE wall_owner_id IS NOT NULL;

CREATE INDEX profile_versions_actor ON profile_versions (actor_id, id);

