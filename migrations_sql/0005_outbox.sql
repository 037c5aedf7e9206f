-- The bot performs the discord_actions outbox. One column serves as both its lease and its
-- backoff: an action is claimable once not_before has passed. Claiming pushes it forward by
-- the claim lease (a bot that dies mid-action hands it back when the lease runs out); a
-- failed attempt pushes it to the next retry; done_at ends it.
ALTER TABLE discord_actions
    ADD COLUMN not_before timestamptz NOT NULL DEFAULT clock_timestamp();

COMMENT ON COLUMN discord_actions.not_before IS
    'Not claimable before this time: the claiming bot''s lease, or the backoff after a failed attempt.';

-- The bot's queue: undone actions in order, with their due time.
DROP INDEX discord_actions_pending_idx;
CREATE INDEX discord_actions_pending_idx ON discord_actions (not_before, id) WHERE done_at IS NULL;
