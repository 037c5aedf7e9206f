DROP INDEX discord_actions_pending_idx;
CREATE INDEX discord_actions_pending_idx ON discord_actions (id) WHERE done_at IS NULL;
ALTER TABLE discord_actions DROP COLUMN not_before;
