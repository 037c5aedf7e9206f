-- Cost control: priorities carried from the policy to the request (the worker's start order
-- reads them), and, below, prices, costs, budgets and policies by Discord role.

ALTER TABLE quota_policies
    ADD COLUMN priority smallint NOT NULL DEFAULT 0
        CONSTRAINT quota_policies_priority_check CHECK (priority BETWEEN -100 AND 100);
COMMENT ON COLUMN quota_policies.priority IS
    'Higher starts sooner among waiting requests; 0 is everyone''s default.';

-- Copied at admission from the policy that admitted the request, so the worker's claim never
-- has to resolve policies (the member's roles are known only at admission).
ALTER TABLE video_requests
    ADD COLUMN priority smallint NOT NULL DEFAULT 0
        CONSTRAINT video_requests_priority_check CHECK (priority BETWEEN -100 AND 100);

-- Prices: what Veo charges per second of video, by model, resolution and audio, as history.
-- A price is never edited: a change is a new row with a later effective_from, and a request is
-- priced by the row in effect at its created_at. Only a price not yet in effect may be deleted.
CREATE TABLE veo_prices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model text NOT NULL CONSTRAINT veo_prices_model_check CHECK (char_length(model) BETWEEN 1 AND 200),
    resolution text NOT NULL CONSTRAINT veo_prices_resolution_check CHECK (resolution IN ('720p', '1080p', '4k')),
    generate_audio boolean NOT NULL,
    usd_per_second numeric(10, 4) NOT NULL
        CONSTRAINT veo_prices_usd_per_second_check CHECK (usd_per_second >= 0 AND usd_per_second <= 100),
    effective_from timestamptz NOT NULL,
    source text NOT NULL CONSTRAINT veo_prices_source_check CHECK (char_length(btrim(source)) BETWEEN 1 AND 500),
    created_by text NOT NULL DEFAULT 'system'
        CONSTRAINT veo_prices_created_by_check CHECK (char_length(btrim(created_by)) BETWEEN 1 AND 150),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Also the look-up's index: the newest row at or before a moment, read backwards.
    CONSTRAINT veo_prices_one_per_moment UNIQUE (model, resolution, generate_audio, effective_from)
);
COMMENT ON TABLE veo_prices IS
    'Veo prices in USD per second of video, as history: a change is a new row with a later effective_from.';

CREATE FUNCTION veo_prices_history_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'prices are history: add a new price with a later effective_from instead of editing price %', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'veo_prices_history_only';
    END IF;
    IF OLD.effective_from <= clock_timestamp() THEN
        RAISE EXCEPTION 'price % has been in effect since %: it stays as history (only a price not yet in effect can be withdrawn)',
            OLD.id, OLD.effective_from
            USING ERRCODE = 'check_violation', CONSTRAINT = 'veo_prices_history_only';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER veo_prices_history_only BEFORE UPDATE OR DELETE ON veo_prices
    FOR EACH ROW EXECUTE FUNCTION veo_prices_history_only();
CREATE TRIGGER veo_prices_moderation_audit AFTER INSERT OR UPDATE OR DELETE ON veo_prices
    FOR EACH ROW WHEN (current_setting('veobot.moderator', true) <> '')
    EXECUTE FUNCTION moderation_audit();

-- Public Vertex AI prices (USD per second, with audio / without), as Google's pricing page gave
-- them late 2026. Veo 3.1 Fast has no 4k price there. Models without a row are unpriced: their
-- cost is unknown (NULL), never 0, and they are refused while any money budget applies. The
-- offline sample is not a generation: it is priced at 0 explicitly.
INSERT INTO veo_prices (model, resolution, generate_audio, usd_per_second, effective_from, source)
SELECT m.model, p.resolution, p.generate_audio, p.usd_per_second, timestamptz '2026-12-01 00:00:00+00',
       'Google Cloud Vertex AI pricing page (cloud.google.com/vertex-ai/generative-ai/pricing), Veo, read 2026-12-07'
FROM (VALUES ('veo-3.1-generate-001', false), ('veo-3.1-generate-preview', false),
             ('veo-3.1-fast-generate-001', true), ('veo-3.1-fast-generate-preview', true)) AS m (model, fast)
JOIN (VALUES (false, '720p', true, 0.40), (false, '720p', false, 0.20),
             (false, '1080p', true, 0.40), (false, '1080p', false, 0.20),
             (false, '4k', true, 0.60), (false, '4k', false, 0.40),
             (true, '720p', true, 0.10), (true, '720p', false, 0.08),
             (true, '1080p', true, 0.12), (true, '1080p', false, 0.10))
     AS p (fast, resolution, generate_audio, usd_per_second) ON p.fast = m.fast;
INSERT INTO veo_prices (model, resolution, generate_audio, usd_per_second, effective_from, source)
SELECT 'offline-sample', r, a, 0, timestamptz '2000-01-01 00:00:00+00',
       'not a Veo generation: the bundled sample video costs nothing'
FROM unnest(ARRAY['720p', '1080p']) AS r, unnest(ARRAY[true, false]) AS a;

-- The price per second in effect at p_at, or NULL when none is known. PL/pgSQL, not SQL: every
-- insert asks, and PL/pgSQL keeps its plan for the session where an SQL function with a FROM
-- clause would be planned again on each call.
CREATE FUNCTION veo_price(p_model text, p_resolution text, p_generate_audio boolean, p_at timestamptz)
RETURNS numeric LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT p.usd_per_second FROM veo_prices p
            WHERE p.model = p_model AND p.resolution = p_resolution AND p.generate_audio = p_generate_audio
              AND p.effective_from <= p_at
            ORDER BY p.effective_from DESC
            LIMIT 1);
END;
$$;

-- Cost of each request. cost_estimated_usd: set by the database when the row is inserted (every
-- path: bot, CLI, journal replay), from the price in effect at created_at x duration_seconds;
-- 0 for a rejected request; NULL when no price is known. cost_final_usd: set when the request
-- ends: the estimate while it counts toward quota, 0 once refunded.
ALTER TABLE video_requests
    ADD COLUMN cost_estimated_usd numeric(10, 4)
        CONSTRAINT video_requests_cost_estimated_usd_check CHECK (cost_estimated_usd >= 0),
    ADD COLUMN cost_final_usd numeric(10, 4)
        CONSTRAINT video_requests_cost_final_usd_check CHECK (cost_final_usd >= 0);
COMMENT ON COLUMN video_requests.cost_estimated_usd IS
    'USD: the price in effect at created_at x duration_seconds (set on insert); 0 if rejected; NULL if no price was known.';
COMMENT ON COLUMN video_requests.cost_final_usd IS
    'USD once the request ended: the estimate while it counts toward quota, 0 when refused or refunded.';

-- Spend over a rolling window. A user's: their rows that count, from video_requests_quota_idx
-- (a user has few in any window). A guild's: these entries only (index-only), newest first; free
-- and unpriced requests are not in it. Everyone's (the operator's cap): too many rows in a busy
-- day to sum at each admission, so the hourly ledger below keeps it.
CREATE INDEX video_requests_guild_spend_idx ON video_requests (guild_id, created_at DESC)
    INCLUDE (cost_estimated_usd) WHERE counts_toward_quota AND cost_estimated_usd > 0 AND guild_id IS NOT NULL;

-- The operator's ledger: the estimated cost of the requests that count, per UTC hour of their
-- created_at, in 8 shards (user_id % 8) so that concurrent admissions rarely wait on one row.
-- Kept by triggers on every path (an insert that counts adds, a refund subtracts). Summed over
-- the hours that meet the rolling day, the oldest one whole: it can count up to an hour of spend
-- that has already left the window, never less than the window holds (never over-spends).
CREATE TABLE operator_spend_hours (
    hour timestamptz NOT NULL,
    shard smallint NOT NULL CONSTRAINT operator_spend_hours_shard_check CHECK (shard BETWEEN 0 AND 7),
    usd numeric(14, 4) NOT NULL CONSTRAINT operator_spend_hours_usd_check CHECK (usd >= 0),
    PRIMARY KEY (hour, shard)
);
COMMENT ON TABLE operator_spend_hours IS
    'Estimated cost of the requests that count, per UTC hour of creation (8 shards by user): the operator''s daily cap reads it.';

CREATE FUNCTION operator_spend_record() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO operator_spend_hours AS h (hour, shard, usd)
        VALUES (date_trunc('hour', NEW.created_at, 'UTC'), NEW.user_id % 8, NEW.cost_estimated_usd)
        ON CONFLICT (hour, shard) DO UPDATE SET usd = h.usd + EXCLUDED.usd;
    ELSE
        UPDATE operator_spend_hours SET usd = GREATEST(usd - OLD.cost_estimated_usd, 0)
        WHERE hour = date_trunc('hour', OLD.created_at, 'UTC') AND shard = OLD.user_id % 8;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER video_requests_operator_spend AFTER INSERT ON video_requests
    FOR EACH ROW WHEN (NEW.counts_toward_quota AND NEW.cost_estimated_usd > 0)
    EXECUTE FUNCTION operator_spend_record();
CREATE TRIGGER video_requests_operator_refund AFTER UPDATE OF counts_toward_quota ON video_requests
    FOR EACH ROW WHEN (OLD.counts_toward_quota AND NOT NEW.counts_toward_quota AND OLD.cost_estimated_usd > 0)
    EXECUTE FUNCTION operator_spend_record();

CREATE OR REPLACE FUNCTION video_requests_guard_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status NOT IN ('pending', 'rejected') THEN
        RAISE EXCEPTION 'a new request must be pending or rejected, not %', NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'video_requests_status_transition';
    END IF;
    NEW.started_at := NULL;
    NEW.completed_at := CASE WHEN NEW.status = 'rejected' THEN NEW.created_at END;
    -- Costs are the database's to set, whoever inserts: a rejected request costs nothing.
    NEW.cost_estimated_usd := CASE WHEN NEW.status = 'rejected' THEN 0
        ELSE veo_price(NEW.model, NEW.resolution, NEW.generate_audio, NEW.created_at) * NEW.duration_seconds END;
    NEW.cost_final_usd := CASE WHEN NEW.status = 'rejected' THEN 0 END;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION video_requests_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.interaction_id, NEW.user_id, NEW.guild_id, NEW.channel_id, NEW.prompt, NEW.negative_prompt,
        NEW.duration_seconds, NEW.aspect_ratio, NEW.resolution, NEW.generate_audio, NEW.person_generation,
        NEW.seed, NEW.model, NEW.source, NEW.created_at, NEW.cost_estimated_usd)
       IS DISTINCT FROM
       (OLD.interaction_id, OLD.user_id, OLD.guild_id, OLD.channel_id, OLD.prompt, OLD.negative_prompt,
        OLD.duration_seconds, OLD.aspect_ratio, OLD.resolution, OLD.generate_audio, OLD.person_generation,
        OLD.seed, OLD.model, OLD.source, OLD.created_at, OLD.cost_estimated_usd) THEN
        RAISE EXCEPTION 'request % facts are read-only (prompt, parameters, Discord context and estimated cost cannot change)', OLD.id
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
    -- Derived, never written: what an ended request cost, following refunds made at its end or later.
    NEW.cost_final_usd := CASE WHEN NEW.status IN ('pending', 'generating') THEN NULL
                               WHEN NEW.counts_toward_quota THEN NEW.cost_estimated_usd ELSE 0 END;
    RETURN NEW;
END;
$$;

-- Policies by Discord role and money budgets.
ALTER TABLE quota_policies
    ADD COLUMN role_id bigint CONSTRAINT quota_policies_role_id_check CHECK (role_id > 0),
    ADD COLUMN role_label text
        CONSTRAINT quota_policies_role_label_check CHECK (char_length(btrim(role_label)) BETWEEN 1 AND 100),
    ADD COLUMN budget_usd numeric(10, 2)
        CONSTRAINT quota_policies_budget_usd_check CHECK (budget_usd >= 0 AND budget_usd <= 1000000),
    ADD COLUMN budget_window interval
        CONSTRAINT quota_policies_budget_window_check CHECK (budget_window BETWEEN interval '1 minute' AND interval '366 days'),
    ADD COLUMN guild_budget_usd numeric(12, 2)
        CONSTRAINT quota_policies_guild_budget_usd_check CHECK (guild_budget_usd >= 0 AND guild_budget_usd <= 100000000),
    ADD COLUMN guild_budget_window interval
        CONSTRAINT quota_policies_guild_budget_window_check
            CHECK (guild_budget_window BETWEEN interval '1 minute' AND interval '366 days'),
    ADD CONSTRAINT quota_policies_role_needs_guild CHECK (role_id IS NULL OR (guild_id IS NOT NULL AND user_id IS NULL)),
    ADD CONSTRAINT quota_policies_label_needs_role CHECK (role_label IS NULL OR role_id IS NOT NULL),
    ADD CONSTRAINT quota_policies_budget_pair CHECK ((budget_usd IS NULL) = (budget_window IS NULL)),
    ADD CONSTRAINT quota_policies_guild_budget_pair CHECK ((guild_budget_usd IS NULL) = (guild_budget_window IS NULL)),
    ADD CONSTRAINT quota_policies_guild_budget_scope
        CHECK (guild_budget_usd IS NULL OR (guild_id IS NOT NULL AND user_id IS NULL AND role_id IS NULL));
COMMENT ON COLUMN quota_policies.role_id IS
    'A Discord role of guild_id: the policy of members holding it (user > role > guild > default; among roles the most generous).';
COMMENT ON COLUMN quota_policies.budget_usd IS
    'Money each user under this policy may spend per budget_window (estimated cost of requests that count).';
COMMENT ON COLUMN quota_policies.guild_budget_usd IS
    'Money the whole guild may spend per guild_budget_window, all its users together (guild-scope rows only).';

DROP INDEX quota_policies_scope_key;
CREATE UNIQUE INDEX quota_policies_scope_key
    ON quota_policies (COALESCE(user_id, 0), COALESCE(guild_id, 0), COALESCE(role_id, 0));
-- The policy look-up asks for a user's rows or a guild's: with this beside quota_policies_guild_idx
-- it is two index probes, not a scan of every policy (a guild with role policies adds rows).
CREATE INDEX quota_policies_user_idx ON quota_policies (user_id) WHERE user_id IS NOT NULL;

-- The policy a member falls under: user > role > guild > default. Among the member's role
-- policies the most generous wins: the highest quota_limit, then the shortest quota_window
-- (its slots free sooner), then the largest budget (none at all is largest), then the highest
-- max_in_flight (none is highest), then the highest priority, then the oldest policy.
DROP FUNCTION resolve_quota_policy(bigint, bigint, integer, interval, integer);
-- A one-row set-returning SQL function, so that the planner inlines it into admission's query.
CREATE FUNCTION resolve_quota_policy(
    p_user_id bigint, p_guild_id bigint, p_role_ids bigint[],
    p_default_limit integer, p_default_window interval, p_default_max_in_flight integer)
RETURNS TABLE (quota_limit integer, quota_window interval, max_in_flight integer,
               budget_usd numeric, budget_window interval, priority smallint, policy_id bigint)
LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT COALESCE(qp.quota_limit, p_default_limit), COALESCE(qp.quota_window, p_default_window),
           CASE WHEN qp.id IS NULL THEN NULLIF(p_default_max_in_flight, 0) ELSE qp.max_in_flight END,
           qp.budget_usd, qp.budget_window, COALESCE(qp.priority, 0::smallint), qp.id
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT q.* FROM quota_policies q
        WHERE (q.user_id = p_user_id AND (q.guild_id = p_guild_id OR q.guild_id IS NULL))
           OR (q.user_id IS NULL AND q.guild_id = p_guild_id
               AND (q.role_id IS NULL OR q.role_id = ANY (p_role_ids)))
        ORDER BY (q.user_id IS NOT NULL) DESC, (q.guild_id IS NOT NULL) DESC, (q.role_id IS NOT NULL) DESC,
                 q.quota_limit DESC, q.quota_window, q.budget_usd DESC NULLS FIRST,
                 q.max_in_flight DESC NULLS FIRST, q.priority DESC, q.id
        LIMIT 1) AS qp ON true
$$;

-- Money spent over a rolling window, from the estimated cost of requests that count toward
-- quota (a refund gives its money back): p_scope is 'user' (p_key a user id), 'guild' (a guild
-- id) or 'operator' (everyone, from the hourly ledger; p_key ignored).
CREATE FUNCTION spend_in_window(p_scope text, p_key bigint, p_since timestamptz)
RETURNS numeric LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_spent numeric;
BEGIN
    -- One statement per scope, each with the index that serves it (an OR of scopes would not).
    IF p_scope = 'user' THEN
        SELECT sum(r.cost_estimated_usd) INTO v_spent FROM video_requests r
        WHERE r.user_id = p_key AND r.counts_toward_quota AND r.cost_estimated_usd > 0 AND r.created_at > p_since;
    ELSIF p_scope = 'guild' THEN
        SELECT sum(r.cost_estimated_usd) INTO v_spent FROM video_requests r
        WHERE r.guild_id = p_key AND r.counts_toward_quota AND r.cost_estimated_usd > 0 AND r.created_at > p_since;
    ELSIF p_scope = 'operator' THEN
        SELECT sum(h.usd) INTO v_spent FROM operator_spend_hours h
        WHERE h.hour >= date_trunc('hour', p_since, 'UTC');
    ELSE
        RAISE EXCEPTION 'unknown spending scope %', p_scope USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN COALESCE(v_spent, 0);
END;
$$;

-- When enough money frees for p_need dollars more to fit under p_budget: the moment the oldest
-- requests leave the window. NULL when p_need can never fit (more than the whole budget).
-- Only refusals ask, so it may read the window twice.
CREATE FUNCTION budget_frees_at(p_scope text, p_key bigint, p_window interval, p_now timestamptz,
                                p_budget numeric, p_need numeric)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_spent numeric := spend_in_window(p_scope, p_key, p_now - p_window);
    v_row   record;
    v_freed numeric := 0;
BEGIN
    IF p_need > p_budget THEN
        RETURN NULL;
    END IF;
    IF p_scope = 'operator' THEN
        -- By the ledger's hours: an hour's money frees when the whole hour has left the window.
        FOR v_row IN
            SELECT h.hour, sum(h.usd) AS usd FROM operator_spend_hours h
            WHERE h.hour >= date_trunc('hour', p_now - p_window, 'UTC')
            GROUP BY h.hour ORDER BY h.hour
        LOOP
            v_freed := v_freed + v_row.usd;
            IF v_spent - v_freed + p_need <= p_budget THEN
                RETURN v_row.hour + interval '1 hour' + p_window;
            END IF;
        END LOOP;
        RETURN p_now;
    END IF;
    FOR v_row IN
        SELECT r.created_at, r.cost_estimated_usd FROM video_requests r
        WHERE r.counts_toward_quota AND r.cost_estimated_usd > 0 AND r.created_at > p_now - p_window
          AND CASE p_scope WHEN 'user' THEN r.user_id = p_key ELSE r.guild_id = p_key END
        ORDER BY r.created_at
    LOOP
        v_freed := v_freed + v_row.cost_estimated_usd;
        IF v_spent - v_freed + p_need <= p_budget THEN
            RETURN v_row.created_at + p_window;
        END IF;
    END LOOP;
    RETURN p_now;
END;
$$;

-- Admission answers also what the request costs and how much money is left.
ALTER TYPE admission_result
    ADD ATTRIBUTE cost_usd numeric,
    ADD ATTRIBUTE money_left_usd numeric,
    ADD ATTRIBUTE money_scope text,
    ADD ATTRIBUTE money_frees_at timestamptz;

DROP FUNCTION admit_video_request(bigint, bigint, bigint, bigint, text, text, smallint, text, text, boolean, text, bigint, text, text, integer, interval, integer, bigint, text, text, text, text);

CREATE FUNCTION admit_video_request(
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
    v_left    numeric;
    v_scope   text;
    v_frees   timestamptz;
    v_budget  numeric;
    v_window  interval;
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
    -- operator), each in an earlier statement than the sums, and only when a budget is set: a
    -- guild without a guild budget never serialises its members.
    IF p_guild_id IS NOT NULL THEN
        SELECT q.guild_budget_usd, q.guild_budget_window INTO v_guild_budget, v_guild_window
        FROM quota_policies q
        WHERE q.guild_id = p_guild_id AND q.user_id IS NULL AND q.role_id IS NULL AND q.guild_budget_usd IS NOT NULL;
        IF v_guild_budget IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(1986161420, hashint8(p_guild_id));
        END IF;
    END IF;
    IF p_operator_budget_usd IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(1986161421, 0);
    END IF;
    v_now := clock_timestamp();

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
    IF v_guild_budget IS NOT NULL THEN
        SELECT COALESCE(sum(r.cost_estimated_usd), 0) INTO v_guild_spent FROM video_requests r
        WHERE r.guild_id = p_guild_id AND r.counts_toward_quota AND r.cost_estimated_usd > 0
          AND r.created_at > v_now - v_guild_window;
    END IF;
    IF p_operator_budget_usd IS NOT NULL THEN
        SELECT COALESCE(sum(h.usd), 0) INTO v_operator_spent FROM operator_spend_hours h
        WHERE h.hour >= date_trunc('hour', v_now - interval '1 day', 'UTC');
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
        ELSIF p_operator_budget_usd IS NOT NULL AND v_operator_spent + v.cost > p_operator_budget_usd THEN
            v_code := 'budget_operator';
            v_budget := p_operator_budget_usd; v_window := interval '1 day';
            v_left := v_budget - v_operator_spent;
            v_frees := budget_frees_at('operator', 0, v_window, v_now, v_budget, v.cost);
            v_reason := 'the bot''s daily spending budget';
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

COMMENT ON FUNCTION admit_video_request IS
    'Race-free, idempotent admission in one round trip, with quotas, budgets and role policies; see migrations_sql/README.md.';

-- ---------------------------------------------------------------------------------------------
-- The dashboard's spend (tracking/analytics_spend.py): spend per day by guild and by model and
-- the top spenders of a period, in one pass over the period's priced requests. The stats index
-- (0003) has no cost and the guild spend index above is per guild, so without this index the
-- pass reads every row of the period from the heap. Partial (rejected requests and the free
-- sample cost 0, unpriced ones are not summed); cost_final_usd is in it because ended requests
-- are summed at their final cost. Adds no HOT-update loss: status changes already update the
-- stats index, which INCLUDEs status.
CREATE INDEX video_requests_spend_idx ON video_requests (created_at)
    INCLUDE (user_id, guild_id, model, cost_estimated_usd, cost_final_usd) WHERE cost_estimated_usd > 0;
