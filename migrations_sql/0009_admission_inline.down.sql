-- Back to the admission of 0003: one statement per helper.

CREATE OR REPLACE FUNCTION admit_video_request(
    p_interaction_id bigint, p_user_id bigint, p_guild_id bigint, p_channel_id bigint,
    p_prompt text, p_negative_prompt text, p_duration_seconds smallint, p_aspect_ratio text,
    p_resolution text, p_generate_audio boolean, p_person_generation text, p_seed bigint, p_model text,
    p_source text, p_default_limit integer, p_default_window interval, p_default_max_in_flight integer)
RETURNS admission_result
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_now        timestamptz;
    v_existing   video_requests;
    v_ban        user_bans;
    v_policy     record;
    v_usage      record;
    v_in_flight  integer;
    v_code       text;
    v_reason     text;
    v_id         bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'admit_video_request needs READ COMMITTED (the per-user lock relies on a fresh snapshot per statement)'
            USING ERRCODE = 'invalid_transaction_state';
    END IF;

    -- One admission at a time per user; duplicates of an interaction share the user, so this
    -- also serialises them.
    PERFORM pg_advisory_xact_lock(1986161410, hashint8(p_user_id));
    v_now := clock_timestamp();

    SELECT * INTO v_existing FROM video_requests WHERE interaction_id = p_interaction_id;
    SELECT * INTO v_policy FROM resolve_quota_policy(p_user_id, p_guild_id, p_default_limit, p_default_window,
                                                     p_default_max_in_flight);

    IF v_existing.id IS NOT NULL THEN
        IF v_existing.user_id <> p_user_id THEN
            RAISE EXCEPTION 'interaction % already belongs to another user', p_interaction_id
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'video_requests_interaction_id_key';
        END IF;
        SELECT * INTO v_usage FROM quota_usage(p_user_id, v_policy.quota_limit, v_policy.quota_window, v_now);
        RETURN ROW(v_existing.id, v_existing.status <> 'rejected', true, v_existing.status,
                   CASE WHEN v_existing.status = 'rejected' THEN v_existing.error_code END,
                   CASE WHEN v_existing.status = 'rejected' THEN v_existing.error_message END,
                   v_usage.used, v_policy.quota_limit, GREATEST(v_policy.quota_limit - v_usage.used, 0),
                   v_usage.reset_at)::admission_result;
    END IF;

    v_ban := active_ban(p_user_id, p_guild_id, v_now);
    SELECT * INTO v_usage FROM quota_usage(p_user_id, v_policy.quota_limit, v_policy.quota_window, v_now);

    IF v_ban.id IS NOT NULL THEN
        v_code := 'banned';
        v_reason := 'banned: ' || v_ban.reason
                    || CASE WHEN v_ban.expires_at IS NULL THEN ' (permanent)'
                            ELSE ' (until ' || to_char(v_ban.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC)' END;
    ELSE
        v_reason := blocked_term_refusal(p_guild_id, p_prompt, p_negative_prompt);
        IF v_reason IS NOT NULL THEN
            v_code := 'blocked_term';
        ELSIF v_usage.used >= v_policy.quota_limit THEN
            v_code := 'quota_exceeded';
            v_reason := format('quota exceeded: %s of %s videos used in the last %s',
                               v_usage.used, v_policy.quota_limit, v_policy.quota_window);
        ELSIF v_policy.max_in_flight IS NOT NULL THEN
            SELECT count(*) INTO v_in_flight FROM (
                SELECT 1 FROM video_requests
                WHERE user_id = p_user_id AND counts_toward_quota AND created_at > v_now - v_policy.quota_window
                  AND status IN ('pending', 'generating')
                LIMIT v_policy.max_in_flight) AS busy;
            IF v_in_flight >= v_policy.max_in_flight THEN
                v_code := 'too_many_in_flight';
                v_reason := format('%s of your videos are already queued or generating; wait for one to finish',
                                   v_in_flight);
            END IF;
        END IF;
    END IF;

    INSERT INTO video_requests (
        interaction_id, user_id, guild_id, channel_id, prompt, negative_prompt, duration_seconds,
        aspect_ratio, resolution, generate_audio, person_generation, seed, model, source,
        status, created_at, available_at, counts_toward_quota, error_code, error_message)
    VALUES (
        p_interaction_id, p_user_id, p_guild_id, p_channel_id, p_prompt, p_negative_prompt, p_duration_seconds,
        p_aspect_ratio, p_resolution, p_generate_audio, p_person_generation, p_seed, p_model, p_source,
        CASE WHEN v_code IS NULL THEN 'pending' ELSE 'rejected' END, v_now, v_now, v_code IS NULL, v_code, v_reason)
    RETURNING id INTO v_id;

    IF v_code IS NULL THEN
        RETURN ROW(v_id, true, false, 'pending', NULL, NULL, v_usage.used + 1, v_policy.quota_limit,
                   v_policy.quota_limit - v_usage.used - 1,
                   COALESCE(v_usage.reset_at, v_now + v_policy.quota_window))::admission_result;
    END IF;
    RETURN ROW(v_id, false, false, 'rejected', v_code, v_reason, v_usage.used, v_policy.quota_limit,
               GREATEST(v_policy.quota_limit - v_usage.used, 0), v_usage.reset_at)::admission_result;
END;
$$;
