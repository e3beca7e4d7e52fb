-- A tombstone (a Delete, or an Undo that arrived before what it undoes) stops only the later
-- activities of the actor who left it: another actor of the same server cannot block someone
-- else's future Create, Follow or Like by naming their ids first. Rows left before this
-- migration keep their author when the post is known, else 0, which still stops everyone.
CREATE TABLE tombstones_by_actor (
    uri TEXT NOT NULL,
    actor_id INTEGER NOT NULL,
    deleted_at INTEGER NOT NULL,
    PRIMARY KEY (uri, actor_id)
) WITHOUT ROWID;
INSERT INTO tombstones_by_actor (uri, actor_id, deleted_at)
    SELECT t.uri, coalesce(p.author_id, 0), t.deleted_at
    FROM tombstones t LEFT JOIN posts p ON p.uri = t.uri;
DROP TABLE tombstones;
ALTER TABLE tombstones_by_actor RENAME TO tombstones;
