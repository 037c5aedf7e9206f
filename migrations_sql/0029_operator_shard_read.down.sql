-- Back to reading everyone's spend at every admission under the operator's cap (0027).
CREATE OR REPLACE FUNCTION admit_video_request(
    p_interaction_id bigint, p_user_id bigint, p_guild_id bigint, p_channel_id bigint,
    p_prompt text, p_negative_prompt text, p_duration_seconds smallint, p_aspect_ratio text,
    p_resolution text, p_generate_audio boolean, p_person_generation text, p_seed bigint, p_model text,
    p_source text, p_default_limit integer, p_default_window interval, p_default_max_in_flight integer,
    p_parent_id bigint DEFAULT NULL, p_derived_as text DEFAULT NULL, p_image_uri text DEFAULT NULL,
    p_last_frame_uri text DEFAULT NULL, p_video_input_uri text DEFAULT NULL,
    p_role_ids bigint[] DEFAULT NULL, p_operator_budget_usd numeric DEFAULT NULL)
RETURNS admission_result
LANGUAGE plpgsql AS $$
DECLARE
    v_now     timestamptz;
    v         record;
    v_code    text;
    v_reason  text;
    v_id      bigint;
    v_repeat  record;
    v_guild_budget numeric;
    v_guild_window interval;
    v_guild_spent  numeric;
    v_operator_spent numeric;
    v_shard   integer;
    v_shard_spent numeric;
    v_allowance numeric;
    v_left    numeric;
    v_scope   text;
    v_frees   timestamptz;
    v_budget  numeric;
    v_window  interval;
    v_hour    timestamptz;
    v_first_hour timestamptz;
    v_first_day timestamptz;
    v_closed  numeric;  -- this shard's spend in its 24 closed hours
    v_counted boolean;
    v_all_counted boolean;
    v_current numeric;
    v_locked  text;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'admit_video_request needs READ COMMITTED (the per-user lock relies on a fresh snapshot per statement)'
            USING ERRCODE = 'invalid_transaction_state';
    END IF;

    -- No roles (DMs, older callers) is the empty list: "= ANY (NULL)" doubled the query's cost.
    p_role_ids := COALESCE(p_role_ids, '{}'::bigint[]);

    -- One admission at a time per user; duplicates of an interaction share the user, so this
    -- also serialises them. The lock is its own statement so that the SELECT below, a later
    -- statement, reads with a snapshot taken after the lock was granted.
    PERFORM pg_advisory_xact_lock(1986161410, hashint8(p_user_id));
    -- Money shared by many users needs its own locks, always in this order (user, guild,
    -- operator's shards), each in an earlier statement than the sums, and only when a budget is
    -- set: a guild without a guild budget never serialises its members.
    IF p_guild_id IS NOT NULL THEN
        -- The budget and its lock in one statement: the lock is taken only where the row is found.
        SELECT q.guild_budget_usd, q.guild_budget_window, pg_advisory_xact_lock(1986161420, hashint8(p_guild_id))
        INTO v_guild_budget, v_guild_window, v_locked
        FROM quota_policies q
        WHERE q.guild_id = p_guild_id AND q.user_id IS NULL AND q.role_id IS NULL AND q.guild_budget_usd IS NOT NULL;
    END IF;
    -- The operator's cap: only this user's shard of it (operator_spend_allowances), unless the
    -- cap was never split or has changed, when every shard's lock is taken to split it again.
    IF p_operator_budget_usd IS NOT NULL THEN
        v_shard := operator_spend_shard(p_user_id);
        PERFORM pg_advisory_xact_lock(1986161422, a.shard) FROM operator_spend_allowances a
        WHERE a.shard = v_shard AND a.cap_usd = p_operator_budget_usd;
        IF NOT FOUND THEN
            PERFORM operator_allowances_split(p_operator_budget_usd, clock_timestamp() - interval '1 day');
        END IF;
    END IF;
    v_now := clock_timestamp();
    v_hour := date_trunc('hour', v_now, 'UTC');

    SELECT existing.id AS existing_id, existing.user_id AS existing_user_id, existing.status AS existing_status,
           existing.error_code AS existing_code, existing.error_message AS existing_message,
           existing.cost_estimated_usd AS existing_cost,
           policy.quota_limit, policy.quota_window, policy.max_in_flight, policy.priority,
           policy.budget_usd, policy.budget_window,
           ban.id AS ban_id, ban.reason AS ban_reason, ban.expires_at AS ban_expires_at,
           usage.used, usage.oldest + policy.quota_window AS reset_at, usage.in_flight,
           (SELECT string_agg('(?:' || t.match_pattern || ')', '|' ORDER BY t.id)
            FROM blocked_terms t
            WHERE t.enabled AND (t.guild_id IS NULL OR t.guild_id = p_guild_id)) AS blocked_pattern,
           (SELECT pr.usd_per_second * p_duration_seconds FROM veo_prices pr
            WHERE pr.model = p_model AND pr.resolution = p_resolution AND pr.generate_audio = p_generate_audio
              AND pr.effective_from <= v_now
            ORDER BY pr.effective_from DESC LIMIT 1) AS cost,
           -- spend_in_window's sum for the user, inline: a function call would cost more than its query.
           CASE WHEN policy.budget_usd IS NOT NULL THEN
               (SELECT COALESCE(sum(r.cost_estimated_usd), 0) FROM video_requests r
                WHERE r.user_id = p_user_id AND r.counts_toward_quota AND r.cost_estimated_usd > 0
                  AND r.created_at > v_now - policy.budget_window) END AS user_spent
    INTO v
    FROM resolve_quota_policy(p_user_id, p_guild_id, p_role_ids, p_default_limit, p_default_window,
                              p_default_max_in_flight) AS policy
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

    -- The guild's and the operator's sums are statements of their own, run only when their budget
    -- is set (after their locks, like the SELECT above): inside that SELECT, a term that depends on
    -- whether a budget is passed made PL/pgSQL plan the whole query again on every call.
    -- The guild's from its ledger (guild_spend_since, inline: an SQL function with a FROM clause
    -- is planned again at every call): the first day's hours, then whole days, as one sum (one
    -- aggregate to start instead of two). Ranges in the ledgers are closed (up to now): the plan
    -- PL/pgSQL keeps is generic, and for an open range on a parameter it expects a third of the
    -- table and reads it from the heap; a closed one it expects small, and takes the index.
    IF v_guild_budget IS NOT NULL THEN
        v_first_hour := date_trunc('hour', v_now - v_guild_window, 'UTC');
        v_first_day := date_trunc('day', v_first_hour - interval '1 hour', 'UTC') + interval '24 hours';
        SELECT COALESCE(sum(u.usd), 0) INTO v_guild_spent
        FROM (SELECT l.usd FROM guild_spend_ledger l
              WHERE l.guild_id = p_guild_id AND l.hours = 1 AND l.starts >= v_first_hour AND l.starts < v_first_day
              UNION ALL
              SELECT l.usd FROM guild_spend_ledger l
              WHERE l.guild_id = p_guild_id AND l.hours = 24 AND l.starts BETWEEN v_first_day AND v_now) AS u;
    END IF;
    -- The operator's: this shard's with its allowance (what decides) and everyone's (what is left,
    -- to say so), each shard's being its 24 closed hours, counted by its first admission of the
    -- hour under its lock and kept (operator_spend_allowances.closed_usd), plus the current hour's
    -- ledger row: 8 rows of each table instead of 25 hours of 8 shards, and an equality PostgreSQL
    -- keeps one plan for (the range over 25 hours it planned again at every call, which cost more
    -- than the sum). Until every shard has been counted this hour, everyone's is summed whole.
    IF p_operator_budget_usd IS NOT NULL THEN
        SELECT max(a.usd) FILTER (WHERE a.shard = v_shard),
               bool_or(COALESCE(a.closed_until = v_hour, false)) FILTER (WHERE a.shard = v_shard),
               max(a.closed_usd) FILTER (WHERE a.shard = v_shard), COALESCE(max(h.usd) FILTER (WHERE a.shard = v_shard), 0),
               sum(a.closed_usd + COALESCE(h.usd, 0)), bool_and(COALESCE(a.closed_until = v_hour, false))
        INTO v_allowance, v_counted, v_closed, v_current, v_operator_spent, v_all_counted
        FROM operator_spend_allowances a
        LEFT JOIN operator_spend_hours h ON h.hour = v_hour AND h.shard = a.shard;
        IF NOT COALESCE(v_counted, false) THEN
            SELECT COALESCE(sum(h.usd), 0) INTO v_closed FROM operator_spend_hours h
            WHERE h.shard = v_shard AND h.hour BETWEEN v_hour - interval '24 hours' AND v_hour - interval '1 hour';
            UPDATE operator_spend_allowances SET closed_until = v_hour, closed_usd = v_closed WHERE shard = v_shard;
        END IF;
        IF NOT COALESCE(v_all_counted, false) THEN
            SELECT COALESCE(sum(h.usd), 0) INTO v_operator_spent FROM operator_spend_hours h
            WHERE h.hour BETWEEN v_hour - interval '24 hours' AND v_now;
        END IF;
        v_shard_spent := v_closed + v_current;
    END IF;

    -- The tightest of the budgets that apply: the least money left, before this request.
    IF v.budget_usd IS NOT NULL THEN
        v_left := v.budget_usd - v.user_spent;
        v_scope := 'user';
    END IF;
    IF v_guild_budget IS NOT NULL AND (v_left IS NULL OR v_guild_budget - v_guild_spent < v_left) THEN
        v_left := v_guild_budget - v_guild_spent;
        v_scope := 'guild';
    END IF;
    IF p_operator_budget_usd IS NOT NULL AND (v_left IS NULL OR p_operator_budget_usd - v_operator_spent < v_left) THEN
        v_left := p_operator_budget_usd - v_operator_spent;
        v_scope := 'operator';
    END IF;

    IF v.existing_id IS NOT NULL THEN
        IF v.existing_user_id <> p_user_id THEN
            RAISE EXCEPTION 'interaction % already belongs to another user', p_interaction_id
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'video_requests_interaction_id_key';
        END IF;
        RETURN ROW(v.existing_id, v.existing_status <> 'rejected', true, v.existing_status,
                   CASE WHEN v.existing_status = 'rejected' THEN v.existing_code END,
                   CASE WHEN v.existing_status = 'rejected' THEN v.existing_message END,
                   v.used, v.quota_limit, GREATEST(v.quota_limit - v.used, 0), v.reset_at,
                   v.existing_cost, GREATEST(v_left, 0), v_scope, NULL)::admission_result;
    END IF;

    -- A second click on the same button (Re-roll, or Edit with the same text) within 5 s is the
    -- same request: Discord sends each click as its own interaction, so the interaction id
    -- cannot tell them apart. Under the user's lock, like everything here.
    IF p_parent_id IS NOT NULL THEN
        SELECT r.id, r.status, r.cost_estimated_usd INTO v_repeat
        FROM video_requests r
        WHERE r.parent_id = p_parent_id AND r.user_id = p_user_id AND r.derived_as = p_derived_as
          AND r.prompt = p_prompt AND r.negative_prompt IS NOT DISTINCT FROM p_negative_prompt
          AND r.status <> 'rejected' AND r.created_at > v_now - interval '5 seconds'
        ORDER BY r.created_at DESC
        LIMIT 1;
        IF FOUND THEN
            RETURN ROW(v_repeat.id, true, true, v_repeat.status, 'repeated_click',
                       'the same request was made a moment ago', v.used, v.quota_limit,
                       GREATEST(v.quota_limit - v.used, 0), v.reset_at,
                       v_repeat.cost_estimated_usd, GREATEST(v_left, 0), v_scope, NULL)::admission_result;
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
    ELSIF v_scope IS NOT NULL AND v.cost IS NULL THEN
        -- Unknown cost under a budget: admitting it could spend past the budget unseen.
        v_code := 'budget_unpriced';
        v_reason := format('no price is known for %s at %s %s audio, and a spending budget applies:'
                           ' an operator must add its price first', p_model, p_resolution,
                           CASE WHEN p_generate_audio THEN 'with' ELSE 'without' END);
    ELSE
        -- Each budget in turn; the first one this video does not fit names the refusal.
        IF v.budget_usd IS NOT NULL AND v.user_spent + v.cost > v.budget_usd THEN
            v_code := 'budget_user';
            v_budget := v.budget_usd; v_window := v.budget_window; v_left := v.budget_usd - v.user_spent;
            v_frees := budget_frees_at('user', p_user_id, v_window, v_now, v_budget, v.cost);
            v_reason := 'your spending budget';
        ELSIF v_guild_budget IS NOT NULL AND v_guild_spent + v.cost > v_guild_budget THEN
            v_code := 'budget_guild';
            v_budget := v_guild_budget; v_window := v_guild_window;
            v_left := v_budget - v_guild_spent;
            v_frees := budget_frees_at('guild', p_guild_id, v_window, v_now, v_budget, v.cost);
            v_reason := 'this server''s spending budget';
        ELSIF p_operator_budget_usd IS NOT NULL AND v_shard_spent + v.cost > COALESCE(v_allowance, 0) THEN
            -- This shard lacks room: borrow the rest from the others (under their locks).
            v_allowance := operator_allowance_borrow(v_shard, v_shard_spent + v.cost - COALESCE(v_allowance, 0),
                                                     v_now - interval '1 day');
            IF v_shard_spent + v.cost > v_allowance THEN
                v_code := 'budget_operator';
                v_budget := p_operator_budget_usd; v_window := interval '1 day';
                -- What this admission could reach: less than the cap's room only while another
                -- admission held a shard it skipped.
                v_left := LEAST(v_budget - v_operator_spent, v_allowance - v_shard_spent);
                v_frees := budget_frees_at('operator', 0, v_window, v_now, v_budget, v.cost);
                v_reason := 'the bot''s daily spending budget';
            END IF;
        END IF;
        IF v_code IS NOT NULL THEN
            v_scope := substr(v_code, 8);
            v_left := GREATEST(v_left, 0);
            v_reason := format('%s is reached: $%s of $%s per %s left, and this video costs $%s; %s',
                               v_reason, to_char(v_left, 'FM999999990.00'), to_char(v_budget, 'FM999999990.00'),
                               v_window, to_char(v.cost, 'FM999999990.00'),
                               CASE WHEN v_frees IS NULL THEN 'it costs more than the whole budget'
                                    ELSE 'enough frees at ' || to_char(v_frees AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC' END);
        END IF;
    END IF;

    INSERT INTO video_requests (
        interaction_id, user_id, guild_id, channel_id, prompt, negative_prompt, duration_seconds,
        aspect_ratio, resolution, generate_audio, person_generation, seed, model, source,
        status, created_at, available_at, counts_toward_quota, error_code, error_message,
        parent_id, derived_as, image_uri, last_frame_uri, video_input_uri, priority)
    VALUES (
        p_interaction_id, p_user_id, p_guild_id, p_channel_id, p_prompt, p_negative_prompt, p_duration_seconds,
        p_aspect_ratio, p_resolution, p_generate_audio, p_person_generation, p_seed, p_model, p_source,
        CASE WHEN v_code IS NULL THEN 'pending' ELSE 'rejected' END, v_now, v_now, v_code IS NULL, v_code, v_reason,
        p_parent_id, p_derived_as, p_image_uri, p_last_frame_uri, p_video_input_uri, v.priority)
    RETURNING id INTO v_id;

    IF v_code IS NULL THEN
        RETURN ROW(v_id, true, false, 'pending', NULL, NULL, v.used + 1, v.quota_limit, v.quota_limit - v.used - 1,
                   COALESCE(v.reset_at, v_now + v.quota_window),
                   v.cost, GREATEST(v_left - v.cost, 0), v_scope, NULL)::admission_result;
    END IF;
    RETURN ROW(v_id, false, false, 'rejected', v_code, v_reason, v.used, v.quota_limit,
               GREATEST(v.quota_limit - v.used, 0), v.reset_at,
               0, GREATEST(v_left, 0), v_scope, v_frees)::admission_result;
END;
$$;

DROP FUNCTION operator_window_spend(timestamptz, timestamptz);
