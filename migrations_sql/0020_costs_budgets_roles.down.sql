-- Back to 0019's admission, policies and request rows. Role policies are deleted (the old
-- one-policy-per-scope index could not hold several per guild); prices and costs are dropped.
-- The dashboard's spend index (the separate block at the end of the up file), first: it
-- uses the cost columns dropped below.
DROP INDEX video_requests_spend_idx;

DROP FUNCTION admit_video_request(bigint, bigint, bigint, bigint, text, text, smallint, text, text, boolean, text, bigint, text, text, integer, interval, integer, bigint, text, text, text, text, bigint[], numeric);
ALTER TYPE admission_result
    DROP ATTRIBUTE money_frees_at,
    DROP ATTRIBUTE money_scope,
    DROP ATTRIBUTE money_left_usd,
    DROP ATTRIBUTE cost_usd;
CREATE FUNCTION admit_video_request(p_interaction_id bigint, p_user_id bigint, p_guild_id bigint, p_channel_id bigint, p_prompt text, p_negative_prompt text, p_duration_seconds smallint, p_aspect_ratio text, p_resolution text, p_generate_audio boolean, p_person_generation text, p_seed bigint, p_model text, p_source text, p_default_limit integer, p_default_window interval, p_default_max_in_flight integer, p_parent_id bigint DEFAULT NULL::bigint, p_derived_as text DEFAULT NULL::text, p_image_uri text DEFAULT NULL::text, p_last_frame_uri text DEFAULT NULL::text, p_video_input_uri text DEFAULT NULL::text) RETURNS admission_result
    LANGUAGE plpgsql
    AS $$
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

COMMENT ON FUNCTION admit_video_request(p_interaction_id bigint, p_user_id bigint, p_guild_id bigint, p_channel_id bigint, p_prompt text, p_negative_prompt text, p_duration_seconds smallint, p_aspect_ratio text, p_resolution text, p_generate_audio boolean, p_person_generation text, p_seed bigint, p_model text, p_source text, p_default_limit integer, p_default_window interval, p_default_max_in_flight integer, p_parent_id bigint, p_derived_as text, p_image_uri text, p_last_frame_uri text, p_video_input_uri text) IS 'Race-free, idempotent admission in one round trip; see migrations_sql/README.md.';

DROP FUNCTION budget_frees_at(text, bigint, interval, timestamptz, numeric, numeric);
DROP FUNCTION spend_in_window(text, bigint, timestamptz);
DROP FUNCTION resolve_quota_policy(bigint, bigint, bigint[], integer, interval, integer);
CREATE FUNCTION resolve_quota_policy(p_user_id bigint, p_guild_id bigint, p_default_limit integer, p_default_window interval, p_default_max_in_flight integer, OUT quota_limit integer, OUT quota_window interval, OUT max_in_flight integer) RETURNS record
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    v_found boolean;
BEGIN
    SELECT qp.quota_limit, qp.quota_window, qp.max_in_flight, true
    INTO quota_limit, quota_window, max_in_flight, v_found
    FROM quota_policies qp
    WHERE (qp.user_id = p_user_id AND (qp.guild_id = p_guild_id OR qp.guild_id IS NULL))
       OR (qp.user_id IS NULL AND qp.guild_id = p_guild_id)
    ORDER BY (qp.user_id IS NOT NULL) DESC, (qp.guild_id IS NOT NULL) DESC
    LIMIT 1;
    IF NOT FOUND THEN
        quota_limit := p_default_limit;
        quota_window := p_default_window;
        max_in_flight := NULLIF(p_default_max_in_flight, 0);
    END IF;
END;
$$;

DELETE FROM quota_policies WHERE role_id IS NOT NULL;
DROP INDEX quota_policies_user_idx;
DROP INDEX quota_policies_scope_key;
ALTER TABLE quota_policies
    DROP COLUMN role_id, DROP COLUMN role_label, DROP COLUMN budget_usd, DROP COLUMN budget_window,
    DROP COLUMN guild_budget_usd, DROP COLUMN guild_budget_window;
CREATE UNIQUE INDEX quota_policies_scope_key ON quota_policies (COALESCE(user_id, 0), COALESCE(guild_id, 0));

CREATE OR REPLACE FUNCTION video_requests_guard_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.status NOT IN ('pending', 'rejected') THEN
        RAISE EXCEPTION 'a new request must be pending or rejected, not %', NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'video_requests_status_transition';
    END IF;
    NEW.started_at := NULL;
    NEW.completed_at := CASE WHEN NEW.status = 'rejected' THEN NEW.created_at END;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION video_requests_guard_update() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

DROP TRIGGER video_requests_operator_spend ON video_requests;
DROP TRIGGER video_requests_operator_refund ON video_requests;
DROP FUNCTION operator_spend_record();
DROP TABLE operator_spend_hours;
DROP INDEX video_requests_guild_spend_idx;
ALTER TABLE video_requests DROP COLUMN cost_estimated_usd, DROP COLUMN cost_final_usd;
DROP FUNCTION veo_price(text, text, boolean, timestamptz);
DROP TABLE veo_prices;
DROP FUNCTION veo_prices_history_only();

ALTER TABLE video_requests DROP COLUMN priority;
ALTER TABLE quota_policies DROP COLUMN priority;
