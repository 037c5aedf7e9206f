-- Admission's budget look-ups made cheaper (docs/BENCHMARKS.md, "Admission's server CPU"):
--   * a guild's spend comes from a ledger, like the operator's, instead of a sum over every
--     request of the guild in the window;
--   * the operator's daily cap is split into allowances, one per ledger shard, so that an
--     admission locks its own shard only instead of one lock that queued every admission.
-- admit_video_request keeps its signature and its result.

-- The guild ledger: the estimated cost of the guild's requests that count, per UTC hour and per
-- UTC day of their created_at (each request is in one hour row and one day row). A window's
-- spend is its first, partial day by the hour (at most 23 rows) plus the whole days after it
-- (one row each): a bounded read however busy the guild. Like the operator's, it counts the
-- window's oldest hour whole: it may refuse up to an hour early, never late. Kept by the same
-- triggers as the operator's ledger, on every path; a refund takes its money out of both rows.
-- One row per guild and hour, not sharded: two members of one guild admitted at once wait for
-- each other's commit on that row (a guild budget's lock makes them do so anyway; a guild
-- without one now waits too, for a commit, where it did not before).
CREATE TABLE guild_spend_ledger (
    guild_id bigint NOT NULL CONSTRAINT guild_spend_ledger_guild_id_check CHECK (guild_id > 0),
    hours smallint NOT NULL CONSTRAINT guild_spend_ledger_hours_check CHECK (hours IN (1, 24)),
    starts timestamptz NOT NULL,
    usd numeric(14, 4) NOT NULL CONSTRAINT guild_spend_ledger_usd_check CHECK (usd >= 0),
    -- Covering: a window is read index-only. Only the current hour's and day's rows change, so
    -- every older row is on an all-visible page once vacuumed; read from the heap, each day's row
    -- was a page of its own and the ledger cost more than the sum it replaces. The price: an
    -- update is never HOT (two index entries per admission, which vacuum reclaims).
    PRIMARY KEY (guild_id, hours, starts) INCLUDE (usd)
);
COMMENT ON TABLE guild_spend_ledger IS
    'Estimated cost of a guild''s requests that count, per UTC hour (hours 1) and per UTC day (hours 24) of creation: guild budgets read it.';

-- The history so far (the trigger below keeps it from here on), in time order as the trigger
-- would have written it: the rows that still change are on the last pages.
INSERT INTO guild_spend_ledger (guild_id, hours, starts, usd)
SELECT guild_id, 1, date_trunc('hour', created_at, 'UTC'), sum(cost_estimated_usd)
FROM video_requests WHERE counts_toward_quota AND cost_estimated_usd > 0 AND guild_id IS NOT NULL GROUP BY 1, 3
UNION ALL
SELECT guild_id, 24, date_trunc('day', created_at, 'UTC'), sum(cost_estimated_usd)
FROM video_requests WHERE counts_toward_quota AND cost_estimated_usd > 0 AND guild_id IS NOT NULL GROUP BY 1, 3
ORDER BY 3, 1, 2;

-- A guild's spend since p_since by the ledger: the hours of the first day, then whole days.
-- The first whole day starts at the first UTC midnight at or after the window's first hour
-- (24 hours, not '1 day': interval days follow the session's time zone). PL/pgSQL so that its
-- plan is kept (admission has the same statement inline).
CREATE FUNCTION guild_spend_since(p_guild_id bigint, p_since timestamptz)
RETURNS numeric LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT COALESCE((SELECT sum(l.usd) FROM guild_spend_ledger l
                         WHERE l.guild_id = p_guild_id AND l.hours = 1
                           AND l.starts >= w.first_hour AND l.starts < w.first_day), 0)
             + COALESCE((SELECT sum(l.usd) FROM guild_spend_ledger l
                         WHERE l.guild_id = p_guild_id AND l.hours = 24 AND l.starts >= w.first_day), 0)
        FROM (SELECT h AS first_hour, date_trunc('day', h - interval '1 hour', 'UTC') + interval '24 hours' AS first_day
              FROM date_trunc('hour', p_since, 'UTC') AS h) AS w);
END;
$$;

-- The operator ledger's shard of a user: a hash, not 0020's user_id % 8, which put ids that are
-- multiples of 8 (every user of the benchmark's history) in one shard. Rows written by the old
-- rule stay where they are: the cap's check needs each shard's spend to be what that shard's
-- admissions recorded, and a refund of an older row taken from another shard moves spend
-- between shards without changing the total (refused early at worst, for a day).
CREATE FUNCTION operator_spend_shard(p_user_id bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT hashint8(p_user_id) & 7 $$;

-- Both ledgers, one trigger: an insert that counts adds to the operator's hour (its shard) and
-- to the guild's hour and day; a refund takes the same amounts back out.
CREATE FUNCTION spend_ledgers_record() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO operator_spend_hours AS h (hour, shard, usd)
        VALUES (date_trunc('hour', NEW.created_at, 'UTC'), operator_spend_shard(NEW.user_id), NEW.cost_estimated_usd)
        ON CONFLICT (hour, shard) DO UPDATE SET usd = h.usd + EXCLUDED.usd;
        IF NEW.guild_id IS NOT NULL THEN
            INSERT INTO guild_spend_ledger AS l (guild_id, hours, starts, usd)
            VALUES (NEW.guild_id, 1, date_trunc('hour', NEW.created_at, 'UTC'), NEW.cost_estimated_usd),
                   (NEW.guild_id, 24, date_trunc('day', NEW.created_at, 'UTC'), NEW.cost_estimated_usd)
            ON CONFLICT (guild_id, hours, starts) DO UPDATE SET usd = l.usd + EXCLUDED.usd;
        END IF;
    ELSE
        UPDATE operator_spend_hours SET usd = GREATEST(usd - OLD.cost_estimated_usd, 0)
        WHERE hour = date_trunc('hour', OLD.created_at, 'UTC') AND shard = operator_spend_shard(OLD.user_id);
        IF OLD.guild_id IS NOT NULL THEN
            UPDATE guild_spend_ledger SET usd = GREATEST(usd - OLD.cost_estimated_usd, 0)
            WHERE guild_id = OLD.guild_id
              AND ((hours = 1 AND starts = date_trunc('hour', OLD.created_at, 'UTC'))
                   OR (hours = 24 AND starts = date_trunc('day', OLD.created_at, 'UTC')));
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
DROP TRIGGER video_requests_operator_spend ON video_requests;
DROP TRIGGER video_requests_operator_refund ON video_requests;
DROP FUNCTION operator_spend_record();
CREATE TRIGGER video_requests_spend_ledgers AFTER INSERT ON video_requests
    FOR EACH ROW WHEN (NEW.counts_toward_quota AND NEW.cost_estimated_usd > 0)
    EXECUTE FUNCTION spend_ledgers_record();
CREATE TRIGGER video_requests_spend_refund AFTER UPDATE OF counts_toward_quota ON video_requests
    FOR EACH ROW WHEN (OLD.counts_toward_quota AND NOT NEW.counts_toward_quota AND OLD.cost_estimated_usd > 0)
    EXECUTE FUNCTION spend_ledgers_record();

-- The operator's daily cap, split into one allowance per shard of the operator's ledger (a user's
-- admissions are recorded in shard operator_spend_shard(user_id)). The allowances always add up
-- to the cap they were split from, and an admission is let through only if its shard's spend in
-- the window, with it, stays within the shard's allowance, under that shard's lock: so the total
-- can never pass the cap, and admissions of users in different shards do not wait for each other.
-- A shard without room borrows unused allowance from the others (their room: allowance minus
-- spend), under their locks too, so the sum stays the cap. Spend leaving the window or refunded
-- frees room in its shard. Locks: the shards above one's own are waited for, in increasing order;
-- those below are only tried (a busy one is skipped), so no two admissions wait for each other in
-- a cycle. A skipped shard can make an admission near the cap be refused while the cap as a whole
-- still has room for it: early, never late.
CREATE TABLE operator_spend_allowances (
    shard smallint PRIMARY KEY CONSTRAINT operator_spend_allowances_shard_check CHECK (shard BETWEEN 0 AND 7),
    -- The cap the allowances were split from; NULL until the first admission under a cap.
    cap_usd numeric(14, 4) CONSTRAINT operator_spend_allowances_cap_usd_check CHECK (cap_usd >= 0),
    usd numeric(20, 6) NOT NULL DEFAULT 0 CONSTRAINT operator_spend_allowances_usd_check CHECK (usd >= 0)
);
COMMENT ON TABLE operator_spend_allowances IS
    'The operator''s daily cap split per shard of operator_spend_hours: each shard''s admissions may spend up to its allowance.';
INSERT INTO operator_spend_allowances (shard) SELECT s FROM generate_series(0, 7) AS s;

-- (Re)split the cap when it is first set or changes (VEO_BUDGET_USD_PER_DAY): under every
-- shard's lock, each shard gets its spend in the window plus an equal part of what is left, or,
-- with the window already past the new cap, a share of the cap smaller than its spend (no room
-- anywhere until spend leaves the window). Rounded down to the microdollar: never more than the cap.
CREATE FUNCTION operator_allowances_split(p_cap numeric, p_since timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR s IN 0..7 LOOP
        PERFORM pg_advisory_xact_lock(1986161422, s);
    END LOOP;
    -- A later statement than the locks: another admission may have split it meanwhile. Rows
    -- are written whole (an upsert), so a lost row is put back rather than read as no limit.
    IF (SELECT count(*) FROM operator_spend_allowances WHERE cap_usd = p_cap) = 8 THEN
        RETURN;
    END IF;
    INSERT INTO operator_spend_allowances AS a (shard, cap_usd, usd)
    SELECT spent.shard, p_cap,
           trunc(CASE WHEN total.usd <= p_cap THEN spent.usd + (p_cap - total.usd) / 8
                      ELSE spent.usd * p_cap / total.usd END, 6)
    FROM (SELECT s.shard, COALESCE(sum(h.usd), 0) AS usd
          FROM generate_series(0, 7) AS s (shard)
          LEFT JOIN operator_spend_hours h ON h.shard = s.shard AND h.hour >= date_trunc('hour', p_since, 'UTC')
          GROUP BY s.shard) AS spent,
         (SELECT COALESCE(sum(h.usd), 0) AS usd FROM operator_spend_hours h
          WHERE h.hour >= date_trunc('hour', p_since, 'UTC')) AS total
    ON CONFLICT (shard) DO UPDATE SET cap_usd = EXCLUDED.cap_usd, usd = EXCLUDED.usd;
END;
$$;

-- Move unused allowance from the other shards to p_shard (whose lock the caller holds) until it
-- has p_need more, or every other shard was asked. Each donor gives half its room, or all the
-- room still needed if that is more, so that a shard busier than the others does not come back
-- at every admission. Returns p_shard's allowance after. Locks as described above.
CREATE FUNCTION operator_allowance_borrow(p_shard integer, p_need numeric, p_since timestamptz)
RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    v_donor integer;
    v_room  numeric;
    v_take  numeric;
    v_got   numeric := 0;
    v_allowance numeric;
BEGIN
    FOR i IN 1..7 LOOP
        v_donor := (p_shard + i) % 8;
        IF v_donor > p_shard THEN
            PERFORM pg_advisory_xact_lock(1986161422, v_donor);
        ELSIF NOT pg_try_advisory_xact_lock(1986161422, v_donor) THEN
            CONTINUE;
        END IF;
        SELECT a.usd - COALESCE((SELECT sum(h.usd) FROM operator_spend_hours h
                                 WHERE h.shard = v_donor AND h.hour >= date_trunc('hour', p_since, 'UTC')), 0)
        INTO v_room FROM operator_spend_allowances a WHERE a.shard = v_donor;
        IF v_room > 0 THEN
            v_take := LEAST(v_room, GREATEST(p_need - v_got, trunc(v_room / 2, 6)));
            UPDATE operator_spend_allowances SET usd = usd - v_take WHERE shard = v_donor;
            v_got := v_got + v_take;
            EXIT WHEN v_got >= p_need;
        END IF;
    END LOOP;
    UPDATE operator_spend_allowances SET usd = usd + v_got WHERE shard = p_shard RETURNING usd INTO v_allowance;
    RETURN COALESCE(v_allowance, 0);
END;
$$;

-- When enough money frees for p_need dollars more to fit under p_budget. A user's money frees as
-- each request leaves the window; a guild's and the operator's by their ledgers' hours: an
-- hour's money frees when the whole hour has left the window. NULL when p_need can never fit.
CREATE OR REPLACE FUNCTION budget_frees_at(p_scope text, p_key bigint, p_window interval, p_now timestamptz,
                                           p_budget numeric, p_need numeric)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    -- What admission counted: for a guild, its ledger (spend_in_window, the dashboard's figure,
    -- sums the guild's requests exactly and may be up to an hour's spend lower).
    v_spent numeric := CASE WHEN p_scope = 'guild' THEN guild_spend_since(p_key, p_now - p_window)
                            ELSE spend_in_window(p_scope, p_key, p_now - p_window) END;
    v_row   record;
    v_freed numeric := 0;
BEGIN
    IF p_need > p_budget THEN
        RETURN NULL;
    END IF;
    IF p_scope IN ('operator', 'guild') THEN
        FOR v_row IN
            SELECT h.hour, sum(h.usd) AS usd FROM operator_spend_hours h
            WHERE p_scope = 'operator' AND h.hour >= date_trunc('hour', p_now - p_window, 'UTC')
            GROUP BY h.hour
            UNION ALL
            SELECT l.starts, l.usd FROM guild_spend_ledger l
            WHERE p_scope = 'guild' AND l.guild_id = p_key AND l.hours = 1
              AND l.starts >= date_trunc('hour', p_now - p_window, 'UTC')
            ORDER BY 1
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
          AND r.user_id = p_key
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
        SELECT q.guild_budget_usd, q.guild_budget_window INTO v_guild_budget, v_guild_window
        FROM quota_policies q
        WHERE q.guild_id = p_guild_id AND q.user_id IS NULL AND q.role_id IS NULL AND q.guild_budget_usd IS NOT NULL;
        IF v_guild_budget IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(1986161420, hashint8(p_guild_id));
        END IF;
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
    -- is planned again at every call): the first day's hours, then whole days.
    IF v_guild_budget IS NOT NULL THEN
        SELECT COALESCE((SELECT sum(l.usd) FROM guild_spend_ledger l
                         WHERE l.guild_id = p_guild_id AND l.hours = 1
                           AND l.starts >= w.first_hour AND l.starts < w.first_day), 0)
             + COALESCE((SELECT sum(l.usd) FROM guild_spend_ledger l
                         WHERE l.guild_id = p_guild_id AND l.hours = 24 AND l.starts BETWEEN w.first_day AND v_now), 0)
        INTO v_guild_spent
        FROM (SELECT h AS first_hour, date_trunc('day', h - interval '1 hour', 'UTC') + interval '24 hours' AS first_day
              FROM date_trunc('hour', v_now - v_guild_window, 'UTC') AS h) AS w;
    END IF;
    -- The operator's: everyone's (what is left, to say so) and this shard's with its allowance
    -- (what decides), in one pass over the ledger's last 25 hours. Ranges in the ledgers are
    -- closed (up to now): the plan PL/pgSQL keeps is generic, and for an open range on a
    -- parameter it expects a third of the table and reads it from the heap; a closed one it
    -- expects small, and takes the index.
    IF p_operator_budget_usd IS NOT NULL THEN
        SELECT COALESCE(sum(h.usd), 0), COALESCE(sum(h.usd) FILTER (WHERE h.shard = v_shard), 0),
               (SELECT a.usd FROM operator_spend_allowances a WHERE a.shard = v_shard)
        INTO v_operator_spent, v_shard_spent, v_allowance
        FROM operator_spend_hours h
        WHERE h.hour BETWEEN date_trunc('hour', v_now - interval '1 day', 'UTC') AND v_now;
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
COMMENT ON FUNCTION admit_video_request IS
    'Race-free, idempotent admission in one round trip, with quotas, budgets and role policies; see migrations_sql/README.md.';
