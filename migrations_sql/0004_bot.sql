-- The Discord bot: an index for its queue-time estimate, and replay of the journal the bot
-- keeps while PostgreSQL is unreachable (degraded mode), with the original timestamps.

-- ETA of a queued request: the median generation time of the latest completed requests
-- with the same length and resolution, read newest first and at most N entries deep.
CREATE INDEX video_requests_eta_idx ON video_requests (duration_seconds, resolution, completed_at DESC)
    WHERE status = 'completed';

-- "Now" for lifecycle stamps: the database clock, except while replaying the journal, when
-- replay_video_request() sets veobot.replay_at (transaction-locally) to when it happened.
CREATE FUNCTION veobot_now() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(current_setting('veobot.replay_at', true), '')::timestamptz, clock_timestamp())
$$;

-- As in 0001, with veobot_now() in place of clock_timestamp(): the transition rules are unchanged.
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
            NEW.started_at := veobot_now();
        ELSE
            -- Every other legal target is terminal. The lease stays: delivery still follows.
            NEW.completed_at := veobot_now();
        END IF;
    ELSIF NEW.started_at IS DISTINCT FROM OLD.started_at OR NEW.completed_at IS DISTINCT FROM OLD.completed_at THEN
        RAISE EXCEPTION 'request %: started_at and completed_at are set by the database on status changes', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'video_requests_timestamps_derived';
    END IF;
    RETURN NEW;
END;
$$;

-- Events carry the time of what they record: veobot_now() while replaying.
ALTER TABLE video_request_events ALTER COLUMN at SET DEFAULT veobot_now();

-- Replay one request from the bot's journal, idempotently (the interaction id is the key):
-- insert it as it was born (pending, or rejected), then walk it through the transitions it
-- went through, each stamped with the journal's time. The triggers still validate every
-- move and write the events. Returns the request id and whether this call inserted it.
--
-- p_request: the admission fields (as admit_video_request takes them) plus created_at,
--   status ('pending' or 'rejected'), error_code / error_message for a rejection.
-- p_steps: [{"status": "generating", "at": ..., "operation_name": ...},
--           {"status": "completed", "at": ..., "output_uris": [...], "public_urls": [...], "output_size_bytes": n},
--           {"status": "failed"|"timeout", "at": ..., "error_code": ..., "error_message": ..., "refund": bool,
--            "safety_filtered_count": n, "safety_filtered_reasons": [...]},
--           {"delivered": true, "at": ..., "method": ..., "message_id": ..., "error": ...}]
CREATE FUNCTION replay_video_request(p_request jsonb, p_steps jsonb, p_actor text,
                                     OUT request_id bigint, OUT inserted boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_step jsonb;
BEGIN
    SELECT id INTO request_id FROM video_requests WHERE interaction_id = (p_request->>'interaction_id')::bigint;
    IF request_id IS NOT NULL THEN
        inserted := false;
        RETURN;
    END IF;
    PERFORM set_config('veobot.actor', p_actor, true);
    PERFORM set_config('veobot.reason', 'replayed from the bot''s journal (database was unreachable)', true);
    PERFORM set_config('veobot.replay_at', p_request->>'created_at', true);
    INSERT INTO video_requests (
        interaction_id, user_id, guild_id, channel_id, prompt, negative_prompt, duration_seconds,
        aspect_ratio, resolution, generate_audio, person_generation, seed, model, source,
        status, created_at, available_at, counts_toward_quota, error_code, error_message)
    VALUES (
        (p_request->>'interaction_id')::bigint, (p_request->>'user_id')::bigint, (p_request->>'guild_id')::bigint,
        (p_request->>'channel_id')::bigint, p_request->>'prompt', p_request->>'negative_prompt',
        (p_request->>'duration_seconds')::smallint, p_request->>'aspect_ratio', p_request->>'resolution',
        (p_request->>'generate_audio')::boolean, p_request->>'person_generation', (p_request->>'seed')::bigint,
        p_request->>'model', COALESCE(p_request->>'source', 'discord'), p_request->>'status',
        (p_request->>'created_at')::timestamptz, (p_request->>'created_at')::timestamptz,
        p_request->>'status' = 'pending', p_request->>'error_code', p_request->>'error_message')
    RETURNING id INTO request_id;
    inserted := true;

    FOR v_step IN SELECT * FROM jsonb_array_elements(COALESCE(p_steps, '[]'::jsonb)) LOOP
        PERFORM set_config('veobot.replay_at', v_step->>'at', true);
        IF (v_step->>'delivered')::boolean THEN
            UPDATE video_requests SET delivered_at = (v_step->>'at')::timestamptz, delivery_method = v_step->>'method',
                   discord_message_id = (v_step->>'message_id')::bigint, delivery_error = v_step->>'error'
            WHERE id = request_id AND delivered_at IS NULL;
        ELSE
            UPDATE video_requests SET
                status = v_step->>'status',
                operation_name = COALESCE(v_step->>'operation_name', operation_name),
                output_uris = CASE WHEN v_step ? 'output_uris'
                                   THEN ARRAY(SELECT jsonb_array_elements_text(v_step->'output_uris')) ELSE output_uris END,
                public_urls = CASE WHEN v_step ? 'public_urls'
                                   THEN ARRAY(SELECT jsonb_array_elements_text(v_step->'public_urls')) ELSE public_urls END,
                output_size_bytes = COALESCE((v_step->>'output_size_bytes')::bigint, output_size_bytes),
                safety_filtered_count = COALESCE((v_step->>'safety_filtered_count')::integer, safety_filtered_count),
                safety_filtered_reasons = CASE WHEN v_step ? 'safety_filtered_reasons'
                                               THEN ARRAY(SELECT jsonb_array_elements_text(v_step->'safety_filtered_reasons'))
                                               ELSE safety_filtered_reasons END,
                error_code = COALESCE(v_step->>'error_code', error_code),
                error_message = COALESCE(v_step->>'error_message', error_message),
                counts_toward_quota = counts_toward_quota AND NOT COALESCE((v_step->>'refund')::boolean, false)
            WHERE id = request_id;
        END IF;
    END LOOP;
    PERFORM set_config('veobot.replay_at', '', true);
END;
$$;

COMMENT ON FUNCTION replay_video_request IS
    'Idempotent replay of one journaled request with its original timestamps; transitions still validated.';
