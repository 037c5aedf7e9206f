-- Removing an output also deletes its objects in the output bucket. The web process holds no
-- bucket credentials, so the removal queues the deletion in the outbox the bot already
-- performs: a 'delete_gcs_objects' action names gs:// objects instead of a Discord message.
ALTER TABLE discord_actions DROP CONSTRAINT discord_actions_action_check;
ALTER TABLE discord_actions ADD CONSTRAINT discord_actions_action_check
    CHECK (action IN ('delete_message', 'delete_gcs_objects'));
ALTER TABLE discord_actions ALTER COLUMN channel_id DROP NOT NULL, ALTER COLUMN message_id DROP NOT NULL;
ALTER TABLE discord_actions ADD COLUMN object_uris text[];
ALTER TABLE discord_actions ADD CONSTRAINT discord_actions_target_check CHECK (CASE action
    WHEN 'delete_message' THEN channel_id IS NOT NULL AND message_id IS NOT NULL AND object_uris IS NULL
    ELSE channel_id IS NULL AND message_id IS NULL AND cardinality(object_uris) >= 1 END);

-- Every action ends one way or the other: done, or failed with its reason in last_error (a
-- refusal that retrying cannot fix, or the attempts used up). Until then it is pending.
ALTER TABLE discord_actions ADD COLUMN failed_at timestamptz;
ALTER TABLE discord_actions ADD CONSTRAINT discord_actions_ends_once_check
    CHECK ((done_at IS NULL OR failed_at IS NULL) AND (failed_at IS NULL OR last_error IS NOT NULL));

COMMENT ON COLUMN discord_actions.object_uris IS
    'delete_gcs_objects: the gs:// objects to delete (NULL for Discord actions).';
COMMENT ON COLUMN discord_actions.failed_at IS
    'When the bot gave up on the action; last_error says why.';
COMMENT ON TABLE discord_actions IS
    'Outbox of moderators'' operations the bot performs (Discord messages, bucket objects); done_at or failed_at ends them.';

-- Removing the same output twice queues one bucket deletion, not two.
CREATE UNIQUE INDEX discord_actions_objects_once_key ON discord_actions (request_id)
    WHERE action = 'delete_gcs_objects';

-- The bot's queue: pending actions only.
DROP INDEX discord_actions_pending_idx;
CREATE INDEX discord_actions_pending_idx ON discord_actions (not_before, id)
    WHERE done_at IS NULL AND failed_at IS NULL;
