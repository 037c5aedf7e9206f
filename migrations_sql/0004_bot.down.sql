DROP FUNCTION IF EXISTS replay_video_request(jsonb, jsonb, text);
ALTER TABLE video_request_events ALTER COLUMN at SET DEFAULT clock_timestamp();

-- The trigger function exactly as 0001 defined it.
CREATE OR REPLACE FUNCTION video_requests_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.interaction_id, NEW.user_id, NEW.guild_id, NEW.channel_id, NEW.prompt, NEW.negative_prompt,
        NEW.duration_seconds, NEW.aspect_ratio, NEW.resolution, NEW.generate_audio, NEW.person_generation,
        NEW.seed, NEW.model, NEW.source, NEW.created_at)
       IS DISTINCT FROM
       (OLD.interaction_id, OLD.user_id, OLD.guild_id, OLD.channel_id, OLD.prompt, OLD.negative_prompt,
        OLD.duration_seconds, OLD.aspect_ratio, OLD.resolution, OLD.generate_audio, OLD.person_generation,
        OLD.seed, OLD.model, OLD.source, OLD.created_at) THEN
        RAISE EXCEPTION 'request % facts are read-only (prompt, parameters and Discord context cannot change)', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'video_requests_facts_read_only';
    END IF;

    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT video_request_transition_allowed(OLD.status, NEW.status) THEN
            RAISE EXCEPTION 'invalid status transition for request %: % -> %', OLD.id, OLD.status, NEW.status
                USING ERRCODE = 'check_violation', CONSTRAINT = 'video_requests_status_transition',
                      HINT = 'pending -> generating|failed|timeout|cancelled; generating -> completed|failed|timeout|cancelled';
        END IF;
        IF NEW.status = 'generating' THEN
            NEW.started_at := clock_timestamp();
        ELSE
            -- Every other legal target is terminal. The lease stays: delivery still follows.
            NEW.completed_at := clock_timestamp();
        END IF;
    ELSIF NEW.started_at IS DISTINCT FROM OLD.started_at OR NEW.completed_at IS DISTINCT FROM OLD.completed_at THEN
        RAISE EXCEPTION 'request %: started_at and completed_at are set by the database on status changes', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'video_requests_timestamps_derived';
    END IF;
    RETURN NEW;
END;
$$;

DROP FUNCTION IF EXISTS veobot_now();
DROP INDEX IF EXISTS video_requests_eta_idx;
