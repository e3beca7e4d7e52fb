-- FEP-400e: the wall collection a partner's actor document advertises (Smithereen's
-- "wall"), used as the target when one of our people writes on that partner's wall.
ALTER TABLE actors ADD COLUMN wall_url TEXT;
