-- Federation: the allowlist, remote actors' endpoints and keys, the inbound archive, the
-- outbox with one delivery row per target inbox, per-host delivery health, tombstones.

-- Which hosts may federate with us. Removal keeps the row (removed_at) for the record.
CREATE TABLE allowed_hosts (
    host TEXT PRIMARY KEY,
    relation TEXT NOT NULL CHECK (relation IN ('partner', 'supplier', 'customer')),
    note TEXT NOT NULL DEFAULT '',
    added_at INTEGER NOT NULL,
    added_by TEXT NOT NULL,
    removed_at INTEGER,
    removed_by TEXT
) WITHOUT ROWID;

ALTER TABLE actors ADD COLUMN actor_type TEXT NOT NULL DEFAULT 'Person';
ALTER TABLE actors ADD COLUMN inbox_url TEXT;
ALTER TABLE actors ADD COLUMN shared_inbox_url TEXT;
ALTER TABLE actors ADD COLUMN outbox_url TEXT;
ALTER TABLE actors ADD COLUMN followers_url TEXT;
ALTER TABLE actors ADD COLUMN following_url TEXT;
ALTER TABLE actors ADD COLUMN key_id TEXT;
ALTER TABLE actors ADD COLUMN fetched_at INTEGER;
CREATE INDEX actors_key_id ON actors (key_id) WHERE key_id IS NOT NULL;
CREATE INDEX actors_followers_url ON actors (followers_url) WHERE followers_url IS NOT NULL;

-- Every public key we have seen for a remote key id: archived signatures stay verifiable.
CREATE TABLE remote_keys (
    key_id TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    owner_uri TEXT NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, public_key_pem)
) WITHOUT ROWID;

-- The instance actor's key (signs our GETs). One row.
CREATE TABLE instance_keys (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    private_key_pem TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Verified inbound requests, stored raw before we answer 202: the legal record and the queue.
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
);
CREATE INDEX inbox_activities_pending ON inbox_activities (next_attempt_at)
    WHERE state = 'pending';

-- Activities we emitted (the system of record), and one delivery row per target inbox.
CREATE TABLE outbox_activities (
    id INTEGER PRIMARY KEY,
    activity_id TEXT NOT NULL UNIQUE,
    activity_type TEXT NOT NULL,
    actor_id INTEGER REFERENCES actors (id),
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
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
    finished_at INTEGER,
    UNIQUE (outbox_id, inbox_url)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'queued';
CREATE INDEX deliveries_host ON deliveries (host, state);

CREATE TABLE host_health (
    host TEXT PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    circuit_open_until INTEGER NOT NULL DEFAULT 0,
    last_success_at INTEGER,
    last_failure_at INTEGER,
    last_error TEXT
) WITHOUT ROWID;

-- Objects deleted by their origin: never re-created by a late or replayed Create.
CREATE TABLE tombstones (
    uri TEXT PRIMARY KEY,
    deleted_at INTEGER NOT NULL
) WITHOUT ROWID;

ALTER TABLE posts ADD COLUMN remote_updated_at INTEGER;
ALTER TABLE likes ADD COLUMN remote INTEGER NOT NULL DEFAULT 0;
CREATE TABLE announces (
    id INTEGER PRIMARY KEY,
    actor_id INTEGER NOT NULL REFERENCES actors (id),
    post_id INTEGER NOT NULL REFERENCES posts (id),
    uri TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    UNIQUE (post_id, actor_id)
);
