-- Signing out ends that session on the server too: a copy of the signed cookie taken before
-- (a shared computer, a proxy log) no longer works. Only revoked session ids are kept, until
-- the session would have expired anyway.
CREATE TABLE revoked_sessions (
    sid TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL
) WITHOUT ROWID;
