-- A burst of /veo admitted in one statement and one commit: admit_video_requests takes the
-- interactions as a jsonb array and answers one row per element, in input order. Under a burst
-- the bot's pooled connections were the queue (one committed transaction and three statements
-- per interaction); now the interactions that arrive while a batch is in flight go together.
--
-- Each element is admitted by admit_video_request, the one admission engine, unchanged. Locks
-- first, so that batches never deadlock with each other or with single admissions (which lock
-- user -> guild -> operator's shards): the batches' own lock, every element's user lock, then every
-- budgeted guild's lock, then every shard of the operator's cap, each kind in the order of its lock key (the hash,
-- not the id: two ids may share a key). The engine then re-takes locks this transaction
-- already holds, which is free. A single admission waiting for a user lock the batch holds
-- holds no guild lock the batch still needs: the batch takes guild locks only once it holds
-- all its user locks.
--
-- For each pending answer the queue estimate comes in the same statement (what
-- selectors.queue_estimate asks: pending rows ahead in the claim's order, capped, and the
-- median generation time of the latest completions of that length and resolution), each asked
-- once for the batch. NOTIFY stays with the caller, after the commit.
-- The first p_limit pending requests in the claim's order, read from the fair queue's index.
-- Told not to sort: that index is partial (pending rows only) and rows pass through it, so
-- between two vacuums of a large table it holds mostly dead pages, which the planner costs it
-- by; with statistics taken while few requests waited, it preferred reading every pending row
-- by status and sorting them, which under a long queue is every admission's cost.
CREATE FUNCTION fair_queue_head(p_limit integer) RETURNS TABLE (fair_round bigint, fair_turn integer, id bigint)
LANGUAGE sql STABLE SET enable_sort = off AS $$
    SELECT w.fair_round, w.fair_turn, w.id FROM video_requests w
    WHERE w.status = 'pending'
    ORDER BY w.fair_round, w.fair_turn, w.id
    LIMIT p_limit
$$;

CREATE FUNCTION admit_video_requests(
    p_requests jsonb, p_source text, p_default_limit integer, p_default_window interval,
    p_default_max_in_flight integer, p_operator_budget_usd numeric, p_position_cap integer, p_eta_sample integer)
RETURNS TABLE (
    ordinal integer, request_id bigint, admitted boolean, duplicate boolean, status text, reason_code text,
    reason text, used integer, quota_limit integer, remaining integer, reset_at timestamptz, cost_usd numeric,
    money_left_usd numeric, money_scope text, money_frees_at timestamptz, ahead integer, median_ms double precision)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    e        record;
    a        admission_result;
    v_key    integer;
    v_medians jsonb := '{}';
    v_pair   text;
    v_answers admission_result[] := '{}';
    v_pairs  text[] := '{}';
    v_pending bigint[] := '{}';
    v_aheads jsonb := '{}';
BEGIN
    IF jsonb_typeof(p_requests) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'admit_video_requests takes a jsonb array of requests' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- One batch at a time, whichever process sends it: each counted insert takes a row of each
    -- spend ledger (operator_spend_hours: the user's shard; guild_spend_ledger: the guild's hour
    -- and day) until the commit, so two batches taking those rows in their elements' orders
    -- could deadlock. Singles take one row of each, and wait for nothing after them.
    PERFORM pg_advisory_xact_lock(1986161423, 0);
    FOR v_key IN
        SELECT DISTINCT hashint8((r ->> 'user_id')::bigint) AS k FROM jsonb_array_elements(p_requests) AS r ORDER BY k
    LOOP
        PERFORM pg_advisory_xact_lock(1986161410, v_key);
    END LOOP;
    -- The same guilds as admit_video_request locks: those with a guild budget.
    FOR v_key IN
        SELECT DISTINCT hashint8(q.guild_id) AS k
        FROM quota_policies q
        WHERE q.user_id IS NULL AND q.role_id IS NULL AND q.guild_budget_usd IS NOT NULL
          AND q.guild_id IN (SELECT (r ->> 'guild_id')::bigint FROM jsonb_array_elements(p_requests) AS r)
        ORDER BY k
    LOOP
        PERFORM pg_advisory_xact_lock(1986161420, v_key);
    END LOOP;
    -- The operator's cap: every shard of it, in order (operator_allowances_split's order). A
    -- single admission waits only for shards above its own, so none holding one the batch
    -- waits for can be waiting for one the batch holds; and the batch's elements, whose shards
    -- (and those they borrow from) it all holds, never wait.
    IF p_operator_budget_usd IS NOT NULL THEN
        FOR v_key IN 0 .. 7 LOOP
            PERFORM pg_advisory_xact_lock(1986161422, v_key);
        END LOOP;
    END IF;

    FOR e IN
        SELECT x.*
        FROM jsonb_array_elements(p_requests) WITH ORDINALITY AS j(element, n)
        CROSS JOIN LATERAL jsonb_to_record(j.element) AS x(
            interaction_id bigint, user_id bigint, guild_id bigint, channel_id bigint, prompt text,
            negative_prompt text, duration_seconds smallint, aspect_ratio text, resolution text,
            generate_audio boolean, person_generation text, seed bigint, model text, parent_id bigint,
            derived_as text, image_uri text, last_frame_uri text, video_input_uri text, role_ids bigint[])
        ORDER BY j.n
    LOOP
        a := admit_video_request(
            e.interaction_id, e.user_id, e.guild_id, e.channel_id, e.prompt, e.negative_prompt,
            e.duration_seconds, e.aspect_ratio, e.resolution, e.generate_audio, e.person_generation, e.seed,
            e.model, p_source, p_default_limit, p_default_window, p_default_max_in_flight, e.parent_id,
            e.derived_as, e.image_uri, e.last_frame_uri, e.video_input_uri, e.role_ids, p_operator_budget_usd);
        v_answers := v_answers || a;
        v_pair := e.duration_seconds || '/' || e.resolution;
        IF a.status = 'pending' THEN
            v_pending := v_pending || a.request_id;
            IF NOT v_medians ? v_pair THEN
                v_medians := v_medians || jsonb_build_object(v_pair, (
                    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY recent.duration_ms)
                    FROM (SELECT r.duration_ms FROM video_requests r
                          WHERE r.status = 'completed' AND r.duration_seconds = e.duration_seconds
                            AND r.resolution = e.resolution
                          ORDER BY r.completed_at DESC LIMIT p_eta_sample) AS recent));
            END IF;
        END IF;
        v_pairs := v_pairs || v_pair;
    END LOOP;

    -- Places in the queue, for all the batch's pending requests at once: one read of the head of
    -- the fair queue's index (as far as the cap, plus the batch), where a count per request read
    -- it again for each. A request past the head is at least the cap down.
    IF cardinality(v_pending) > 0 THEN
        WITH head AS MATERIALIZED (
            SELECT * FROM fair_queue_head(p_position_cap + cardinality(v_pending)))
        SELECT jsonb_object_agg(me.id::text, LEAST(
                   (SELECT count(*) FROM head h
                    WHERE (h.fair_round, h.fair_turn, h.id) < (me.fair_round, me.fair_turn, me.id)),
                   p_position_cap))
        INTO v_aheads
        FROM video_requests me
        WHERE me.id = ANY (v_pending);
    END IF;

    FOR i IN 1 .. cardinality(v_answers) LOOP
        a := v_answers[i];
        ordinal := i;
        request_id := a.request_id; admitted := a.admitted; duplicate := a.duplicate; status := a.status;
        reason_code := a.reason_code; reason := a.reason; used := a.used; quota_limit := a.quota_limit;
        remaining := a.remaining; reset_at := a.reset_at; cost_usd := a.cost_usd;
        money_left_usd := a.money_left_usd; money_scope := a.money_scope; money_frees_at := a.money_frees_at;
        ahead := NULL; median_ms := NULL;
        IF a.status = 'pending' THEN
            ahead := (v_aheads ->> a.request_id::text)::integer;
            median_ms := (v_medians ->> v_pairs[i])::double precision;
        END IF;
        RETURN NEXT;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION admit_video_requests IS
    'Many admissions in one statement and one commit, each by admit_video_request, locks in key order first; see 0024_burst_admission.sql.';
