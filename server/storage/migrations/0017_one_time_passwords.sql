-- A password someone else chose or saw (generated, or set by an admin) is for one sign-in:
-- its holder must choose their own before doing anything else.
ALTER TABLE accounts ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
