-- Lineage and media inputs.
--
-- A request can now come from another: a Re-roll (same parameters, a new seed), an Edit (a new
-- prompt) or an Extend (Veo continues the parent's video) of a result in Discord. The child
-- records its parent and how it was derived; a parent erased later leaves parent_id NULL and
-- derived_as set (it was derived, from a request that is gone).
--
-- And a request can carry inputs: a first frame (image-to-video), a last frame, and for an
-- extension the parent's video. Each is the URI of a file kept beside the outputs (file: or
-- gs:), written before admission, so a moderator sees what the model was given and removing
-- the request removes them too.
--
-- admit_video_request takes the five as optional trailing arguments (older callers are
-- unchanged), and answers a second click on the same button within 5 s with the first
-- request (reason_code 'repeated_click') instead of admitting it twice.

ALTER TABLE video_requests
    ADD COLUMN parent_id bigint REFERENCES video_requests (id) ON DELETE SET NULL,
    ADD COLUMN derived_as text CONSTRAINT video_requests_derived_as_check CHECK (derived_as IN ('reroll', 'edit', 'extend')),
    ADD COLUMN image_uri text CONSTRAINT video_requests_image_uri_check CHECK (char_length(image_uri) BETWEEN 1 AND 2000),
    ADD COLUMN last_frame_uri text CONSTRAINT video_requests_last_frame_uri_check CHECK (char_length(last_frame_uri) BETWEEN 1 AND 2000),
    ADD COLUMN video_input_uri text CONSTRAINT video_requests_video_input_uri_check CHECK (char_length(video_input_uri) BETWEEN 1 AND 2000),
    ADD CONSTRAINT video_requests_parent_has_kind CHECK (parent_id IS NULL OR derived_as IS NOT NULL),
    ADD CONSTRAINT video_requests_last_frame_needs_image CHECK (last_frame_uri IS NULL OR image_uri IS NOT NULL);

-- The family of a request (the admin), and the repeated-click check of admission.
CREATE INDEX video_requests_parent_idx ON video_requests (parent_id, created_at) WHERE parent_id IS NOT NULL;

COMMENT ON COLUMN video_requests.parent_id IS 'The request this one was derived from (derived_as says how); NULL when none, or when the parent was erased.';
COMMENT ON COLUMN video_requests.image_uri IS 'The first frame given to Veo (image-to-video), kept beside the outputs.';
COMMENT ON COLUMN video_requests.last_frame_uri IS 'The last frame given to Veo (only with image_uri).';
COMMENT ON COLUMN video_requests.video_input_uri IS 'The video Veo extended (the parent''s output) for derived_as = extend.';

DROP FUNCTION admit_video_request(bigint, bigint, bigint, bigint, text, text, smallint, text, text, boolean, text, bigint, text, text, integer, interval, integer);

CREATE FUNCTION admit_video_request(
    p_interaction_id bigint, p_user_id bigint, p_guild_id bigint, p_channel_id bigint,
    p_prompt text, p_negative_prompt text, p_duration_seconds smallint, p_aspect_ratio text,
    p_resolution text, p_generate_audio boolean, p_person_generation text, p_seed bigint, p_model text,
    p_source text, p_default_limit integer, p_default_window interval, p_default_max_in_flight integer,
    p_parent_id bigint DEFAULT NULL, p_derived_as text DEFAULT NULL, p_image_uri text DEFAULT NULL,
    p_last_frame_uri text DEFAULT NULL, p_video_input_uri text DEFAULT NULL)
RETURNS admission_result
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_now     timestamptz;
    v         record;
    v_code    text;
    v_reason  text;
    v_id      bigint;
    v_repeat  record;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'admit_video_request needs READ COMMITTED (the per-user lock relies on a fresh snapshot per statement)'
            USING ERRCODE = 'invalid_transaction_state';
    END IF;

    -- One admission at a time per user; duplicates of an interaction share the user, so this
    -- also serialises them. The lock is its own statement so that the SELECT below, a later
    -- statement, reads with a snapshot taken after the lock was granted.
    PERFORM pg_advisory_xact_lock(1986161410, hashint8(p_user_id));
    v_now := clock_timestamp();

    SELECT existing.id AS existing_id, existing.user_id AS existing_user_id, existing.status AS existing_status,
           existing.error_code AS existing_code, existing.error_message AS existing_message,
           policy.quota_limit, policy.quota_window, policy.max_in_flight,
           ban.id AS ban_id, ban.reason AS ban_reason, ban.expires_at AS ban_expires_at,
           usage.used, usage.oldest + policy.quota_window AS reset_at, usage.in_flight,
           (SELECT string_agg('(?:' || t.match_pattern || ')', '|' ORDER BY t.id)
            FROM blocked_terms t
            WHERE t.enabled AND (t.guild_id IS NULL OR t.guild_id = p_guild_id)) AS blocked_pattern
    INTO v
    FROM (SELECT COALESCE(qp.quota_limit, p_default_limit) AS quota_limit,
                 COALESCE(qp.quota_window, p_default_window) AS quota_window,
                 CASE WHEN qp.id IS NULL THEN NULLIF(p_default_max_in_flight, 0) ELSE qp.max_in_flight END
                     AS max_in_flight
          FROM (SELECT 1) AS one
          LEFT JOIN LATERAL (
              SELECT q.id, q.quota_limit, q.quota_window, q.max_in_flight
              FROM quota_policies q
              WHERE (q.user_id = p_user_id AND (q.guild_id = p_guild_id OR q.guild_id IS NULL))
                 OR (q.user_id IS NULL AND q.guild_id = p_guild_id)
              ORDER BY (q.user_id IS NOT NULL) DESC, (q.guild_id IS NOT NULL) DESC
              LIMIT 1) AS qp ON true) AS policy
    CROSS JOIN LATERAL (
        SELECT count(*)::integer AS used, min(recent.created_at) AS oldest,
               count(*) FILTER (WHERE recent.status IN ('pending', 'generating'))::integer AS in_flight
        FROM (SELECT r.created_at, r.status
              FROM video_requests r
              WHERE r.user_id = p_user_id AND r.counts_toward_quota AND r.created_at > v_now - policy.quota_window
              ORDER BY r.created_at DESC
              LIMIT GREATEST(policy.quota_limit, 1)) AS recent) AS usage
    LEFT JOIN video_requests AS existing ON existing.interaction_id = p_interaction_id
    LEFT JOIN LATERAL (
        SELECT b.id, b.reason, b.expires_at
        FROM user_bans b
        WHERE b.user_id = p_user_id AND b.lifted_at IS NULL
          AND (b.expires_at IS NULL OR b.expires_at > v_now)
          AND (b.guild_id IS NULL OR b.guild_id = p_guild_id)
        ORDER BY b.expires_at DESC NULLS FIRST
        LIMIT 1) AS ban ON true;

    IF v.existing_id IS NOT NULL THEN
        IF v.existing_user_id <> p_user_id THEN
            RAISE EXCEPTION 'interaction % already belongs to another user', p_interaction_id
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'video_requests_interaction_id_key';
        END IF;
        RETURN ROW(v.existing_id, v.existing_status <> 'rejected', true, v.existing_status,
                   CASE WHEN v.existing_status = 'rejected' THEN v.existing_code END,
                   CASE WHEN v.existing_status = 'rejected' THEN v.existing_message END,
                   v.used, v.quota_limit, GREATEST(v.quota_limit - v.used, 0), v.reset_at)::admission_result;
    END IF;

    -- A second click on the same button (Re-roll, or Edit with the same text) within 5 s is the
    -- same request: Discord sends each click as its own interaction, so the interaction id
    -- cannot tell them apart. Under the user's lock, like everything here.
    IF p_parent_id IS NOT NULL THEN
        SELECT r.id, r.status INTO v_repeat
        FROM video_requests r
        WHERE r.parent_id = p_parent_id AND r.user_id = p_user_id AND r.derived_as = p_derived_as
          AND r.prompt = p_prompt AND r.negative_prompt IS NOT DISTINCT FROM p_negative_prompt
          AND r.status <> 'rejected' AND r.created_at > v_now - interval '5 seconds'
        ORDER BY r.created_at DESC
        LIMIT 1;
        IF FOUND THEN
            RETURN ROW(v_repeat.id, true, true, v_repeat.status, 'repeated_click',
                       'the same request was made a moment ago', v.used, v.quota_limit,
                       GREATEST(v.quota_limit - v.used, 0), v.reset_at)::admission_result;
        END IF;
    END IF;

    IF v.ban_id IS NOT NULL THEN
        v_code := 'banned';
        v_reason := 'banned: ' || v.ban_reason
                    || CASE WHEN v.ban_expires_at IS NULL THEN ' (permanent)'
                            ELSE ' (until ' || to_char(v.ban_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC)' END;
    ELSIF v.blocked_pattern IS NOT NULL
          AND (p_prompt ~* v.blocked_pattern OR COALESCE(p_negative_prompt, '') ~* v.blocked_pattern) THEN
        v_code := 'blocked_term';
        v_reason := COALESCE(blocked_term_refusal(p_guild_id, p_prompt, p_negative_prompt),
                             'prompt refused: it matches a blocked pattern');
    ELSIF v.used >= v.quota_limit THEN
        v_code := 'quota_exceeded';
        v_reason := format('quota exceeded: %s of %s videos used in the last %s', v.used, v.quota_limit, v.quota_window);
    ELSIF v.in_flight >= v.max_in_flight THEN
        v_code := 'too_many_in_flight';
        v_reason := format('%s of your videos are already queued or generating; wait for one to finish', v.in_flight);
    END IF;

    INSERT INTO video_requests (
        interaction_id, user_id, guild_id, channel_id, prompt, negative_prompt, duration_seconds,
        aspect_ratio, resolution, generate_audio, person_generation, seed, model, source,
        status, created_at, available_at, counts_toward_quota, error_code, error_message,
        parent_id, derived_as, image_uri, last_frame_uri, video_input_uri)
    VALUES (
        p_interaction_id, p_user_id, p_guild_id, p_channel_id, p_prompt, p_negative_prompt, p_duration_seconds,
        p_aspect_ratio, p_resolution, p_generate_audio, p_person_generation, p_seed, p_model, p_source,
        CASE WHEN v_code IS NULL THEN 'pending' ELSE 'rejected' END, v_now, v_now, v_code IS NULL, v_code, v_reason,
        p_parent_id, p_derived_as, p_image_uri, p_last_frame_uri, p_video_input_uri)
    RETURNING id INTO v_id;

    IF v_code IS NULL THEN
        RETURN ROW(v_id, true, false, 'pending', NULL, NULL, v.used + 1, v.quota_limit, v.quota_limit - v.used - 1,
                   COALESCE(v.reset_at, v_now + v.quota_window))::admission_result;
    END IF;
    RETURN ROW(v_id, false, false, 'rejected', v_code, v_reason, v.used, v.quota_limit,
               GREATEST(v.quota_limit - v.used, 0), v.reset_at)::admission_result;
END;
$$;

COMMENT ON FUNCTION admit_video_request IS
    'Race-free, idempotent admission in one round trip; see migrations_sql/README.md.';

-- Replay writes a journaled request's lineage and inputs as admission does.
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
        status, created_at, available_at, counts_toward_quota, error_code, error_message,
        parent_id, derived_as, image_uri, last_frame_uri, video_input_uri)
    VALUES (
        (p_request->>'interaction_id')::bigint, (p_request->>'user_id')::bigint, (p_request->>'guild_id')::bigint,
        (p_request->>'channel_id')::bigint, p_request->>'prompt', p_request->>'negative_prompt',
        (p_request->>'duration_seconds')::smallint, p_request->>'aspect_ratio', p_request->>'resolution',
        (p_request->>'generate_audio')::boolean, p_request->>'person_generation', (p_request->>'seed')::bigint,
        p_request->>'model', COALESCE(p_request->>'source', 'discord'), p_request->>'status',
        (p_request->>'created_at')::timestamptz, (p_request->>'created_at')::timestamptz,
        p_request->>'status' = 'pending', p_request->>'error_code', p_request->>'error_message',
        -- A parent erased while this waited in the journal is gone: the child keeps how it was made.
        (SELECT p.id FROM video_requests p WHERE p.id = (p_request->>'parent_id')::bigint), p_request->>'derived_as',
        p_request->>'image_uri', p_request->>'last_frame_uri', p_request->>'video_input_uri')
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
