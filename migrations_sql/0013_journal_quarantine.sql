-- Degraded mode without poison: every journaled ending replays, what cannot is quarantined
-- and reported, and the refund rule becomes the database's own.

-- Replay of one journaled request, as 0004 defined it, except that a step's fields are read
-- only when they hold what they should: the journal wrote "safety_filtered_reasons": null for
-- every ending but the safety filter's, and jsonb_array_elements_text(null) raised, so every
-- failed, timed-out or lost request -- and the whole journal after it -- could never replay.
-- A step may also be a cancellation, or a start Veo put off (429, 5xx): the worker records those
-- as 'released' events, and so does the replay. Returns the request id and whether this call
-- inserted it.
CREATE OR REPLACE FUNCTION replay_video_request(p_request jsonb, p_steps jsonb, p_actor text,
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
        ELSIF (v_step->>'released')::boolean THEN
            INSERT INTO video_request_events (request_id, kind, actor, detail)
            VALUES (request_id, 'released', p_actor, jsonb_strip_nulls(jsonb_build_object(
                'reason', v_step->>'reason', 'available_at', v_step->'available_at')));
        ELSE
            UPDATE video_requests SET
                status = v_step->>'status',
                operation_name = COALESCE(v_step->>'operation_name', operation_name),
                output_uris = CASE WHEN jsonb_typeof(v_step->'output_uris') = 'array'
                                   THEN ARRAY(SELECT jsonb_array_elements_text(v_step->'output_uris'))
                                   ELSE output_uris END,
                public_urls = CASE WHEN jsonb_typeof(v_step->'public_urls') = 'array'
                                   THEN ARRAY(SELECT jsonb_array_elements_text(v_step->'public_urls'))
                                   ELSE public_urls END,
                output_size_bytes = COALESCE((v_step->>'output_size_bytes')::bigint, output_size_bytes),
                safety_filtered_count = COALESCE((v_step->>'safety_filtered_count')::integer, safety_filtered_count),
                safety_filtered_reasons = CASE WHEN jsonb_typeof(v_step->'safety_filtered_reasons') = 'array'
                                               THEN ARRAY(SELECT jsonb_array_elements_text(
                                                   v_step->'safety_filtered_reasons'))
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

-- The refund rule: a request that ended by our (or Veo's) failure, a deadline or a
-- cancellation never counts toward the quota; only Veo's safety filter may leave it counted
-- (VEO_REFUND_CONTENT_FILTERED decides). Python's table (tracking/outcomes.py) says the same,
-- and a test compares them. NOT VALID: existing rows are not scanned under a table lock at
-- deploy time (they were all written by that same rule); every new write is checked.
ALTER TABLE video_requests ADD CONSTRAINT video_requests_ended_by_us_never_counts CHECK (NOT (
    counts_toward_quota
    AND (status IN ('timeout', 'cancelled') OR (status = 'failed' AND error_code IS DISTINCT FROM 'content_filtered'))
)) NOT VALID;

-- Journal entries that could not be replayed, as the bot that quarantined them reported them.
-- The entry itself stays in a file beside that bot's journal (manage.py replay_journal lists
-- and retries them); this row is what /healthz counts and moderators see in the admin.
CREATE TABLE journal_quarantine (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_key       text NOT NULL CONSTRAINT journal_quarantine_entry_key_key UNIQUE
                    CONSTRAINT journal_quarantine_entry_key_check CHECK (char_length(entry_key) BETWEEN 1 AND 300),
    host            text NOT NULL,
    interaction_id  bigint,
    user_id         bigint,
    kind            text NOT NULL CONSTRAINT journal_quarantine_kind_check CHECK (kind IN ('request', 'line')),
    error           text NOT NULL,
    entry           text NOT NULL,  -- the quarantined entry as JSON text, escaped (it may hold what jsonb refuses)
    quarantined_at  timestamptz NOT NULL,
    reported_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved_at     timestamptz,
    resolution      text CONSTRAINT journal_quarantine_resolution_check CHECK (resolution IN ('replayed', 'discarded')),
    resolved_by     text,
    CONSTRAINT journal_quarantine_resolution_pair CHECK ((resolved_at IS NULL) = (resolution IS NULL))
);

CREATE INDEX journal_quarantine_open_idx ON journal_quarantine (quarantined_at) WHERE resolved_at IS NULL;

COMMENT ON TABLE journal_quarantine IS
    'Journal entries a bot could not replay; the entry stays in its quarantine folder until replayed or discarded.';
