-- When the partner's WebFinger last confirmed that a remote actor is name@host (NULL: never
-- asked). An actor's preferredUsername alone is its own claim; a handle typed by a colleague
-- is trusted to reach it only once its server said so.
ALTER TABLE actors ADD COLUMN handle_checked_at INTEGER;
