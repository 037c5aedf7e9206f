DROP INDEX discord_actions_pending_idx;
CREATE INDEX discord_actions_pending_idx ON discord_actions (not_before, id) WHERE done_at IS NULL;
DROP INDEX discord_actions_objects_once_key;
COMMENT ON TABLE discord_actions IS
    'Outbox of Discord operations requested by moderators; the bot performs them and sets done_at.';
-- Bucket deletions cannot be expressed without the new columns.
DELETE FROM discord_actions WHERE action = 'delete_gcs_objects';
ALTER TABLE discord_actions DROP CONSTRAINT discord_actions_ends_once_check;
ALTER TABLE discord_actions DROP COLUMN failed_at;
ALTER TABLE discord_actions DROP CONSTRAINT discord_actions_target_check;
ALTER TABLE discord_actions DROP COLUMN object_uris;
ALTER TABLE discord_actions ALTER COLUMN channel_id SET NOT NULL, ALTER COLUMN message_id SET NOT NULL;
ALTER TABLE discord_actions DROP CONSTRAINT discord_actions_action_check;
ALTER TABLE discord_actions ADD CONSTRAINT discord_actions_action_check CHECK (action IN ('delete_message'));
