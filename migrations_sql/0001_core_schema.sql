-- veobot core schema: the request log, its event history, quota policies and bans.
-- Invariants live here so that no caller can break them.

-- ---------------------------------------------------------------------------
-- video_requests: one row per /veo attempt, from arrival to delivery.
-- ---------------------------------------------------------------------------
CREATE TABLE video_requests (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source                  text NOT NULL DEFAULT 'discord'
                            CONSTRAINT video_requests_source_check CHECK (source IN ('discord', 'cli')),

    -- Discord context. Snowflakes are bigint; guild is NULL in DMs.
    interaction_id          bigint NOT NULL
                            CONSTRAINT video_requests_interaction_id_key UNIQUE,
    user_id                 bigint NOT NULL CONSTRAINT video_requests_user_id_check CHECK (user_id > 0),
    guild_id                bigint CONSTRAINT video_requests_guild_id_check CHECK (guild_id > 0),
    channel_id              bigint CONSTRAINT video_requests_channel_id_check CHECK (channel_id > 0),

    -- Parameters.
    prompt                  text NOT NULL
                            CONSTRAINT video_requests_prompt_check CHECK (char_length(prompt) BETWEEN 1 AND 4000),
    negative_prompt         text
                            CONSTRAINT video_requests_negative_prompt_check CHECK (char_length(negative_prompt) <= 4000),
    duration_seconds        smallint NOT NULL
                            CONSTRAINT video_requests_duration_check CHECK (duration_seconds IN (4, 6, 8)),
    aspect_ratio            text NOT NULL
                            CONSTRAINT video_requests_aspect_ratio_check CHECK (aspect_ratio IN ('16:9', '9:16')),
    resolution              text NOT NULL
                            CONSTRAINT video_requests_resolution_check CHECK (resolution IN ('720p', '1080p')),
    generate_audio          boolean NOT NULL DEFAULT true,
    person_generation       text NOT NULL DEFAULT 'allow_adult'
                            CONSTRAINT video_requests_person_generation_check
                            CHECK (person_generation IN ('dont_allow', 'allow_adult', 'allow_all')),
    seed                    bigint CONSTRAINT video_requests_seed_check CHECK (seed BETWEEN 0 AND 4294967295),
    model                   text NOT NULL CONSTRAINT video_requests_model_check CHECK (char_length(model) BETWEEN 1 AND 200),

    -- Lifecycle. started_at / completed_at are stamped by trigger; duration_ms is derived.
    status                  text NOT NULL
                            CONSTRAINT video_requests_status_check CHECK (status IN (
                                'pending', 'generating', 'completed', 'failed', 'timeout', 'cancelled', 'rejected')),
    operation_name          text,
    created_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    available_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at              timestamptz,
    completed_at            timestamptz,
    duration_ms             integer GENERATED ALWAYS AS (
                                (extract(epoch FROM (completed_at - started_at)) * 1000)::integer) STORED,

    -- Results.
    output_uris             text[] NOT NULL DEFAULT '{}',
    public_urls             text[] NOT NULL DEFAULT '{}',
    output_size_bytes       bigint CONSTRAINT video_requests_output_size_check CHECK (output_size_bytes >= 0),
    safety_filtered_count   integer NOT NULL DEFAULT 0
                            CONSTRAINT video_requests_safety_filtered_count_check CHECK (safety_filtered_count >= 0),
    safety_filtered_reasons text[] NOT NULL DEFAULT '{}',
    error_code              text CONSTRAINT video_requests_error_code_check CHECK (error_code ~ '^[a-z][a-z0-9_]{0,62}$'),
    error_message           text CONSTRAINT video_requests_error_message_check CHECK (char_length(error_message) <= 4000),

    -- Delivery.
    delivered_at            timestamptz,
    delivery_method         text CONSTRAINT video_requests_delivery_method_check
                            CHECK (delivery_method IN ('interaction', 'channel', 'cli', 'undeliverable')),
    discord_message_id      bigint,
    delivery_error          text,

    -- Quota: false for rejected requests and for failures on our side (refunds).
    counts_toward_quota     boolean NOT NULL,

    -- Worker lease.
    claimed_by              text,
    lease_expires_at        timestamptz,
    attempts                integer NOT NULL DEFAULT 0 CONSTRAINT video_requests_attempts_check CHECK (attempts >= 0),

    -- Moderation.
    review_status           text NOT NULL DEFAULT 'unreviewed'
                            CONSTRAINT video_requests_review_status_check
                            CHECK (review_status IN ('unreviewed', 'approved', 'flagged', 'removed')),
    reviewed_by             text,
    reviewed_at             timestamptz,
    review_note             text,

    CONSTRAINT video_requests_rejected_never_counts CHECK (status <> 'rejected' OR NOT counts_toward_quota),
    CONSTRAINT video_requests_rejected_has_reason CHECK (status <> 'rejected' OR error_code IS NOT NULL),
    CONSTRAINT video_requests_generating_has_operation CHECK (status <> 'generating' OR operation_name IS NOT NULL),
    CONSTRAINT video_requests_completed_has_output CHECK (status <> 'completed' OR cardinality(output_uris) > 0),
    CONSTRAINT video_requests_failed_has_reason CHECK (status NOT IN ('failed', 'timeout') OR error_code IS NOT NULL),
    CONSTRAINT video_requests_lease_pair CHECK ((claimed_by IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT video_requests_delivery_pair CHECK ((delivered_at IS NULL) = (delivery_method IS NULL))
);

COMMENT ON TABLE video_requests IS 'One row per /veo attempt: parameters, lifecycle, results, delivery, quota, lease, moderation.';
COMMENT ON COLUMN video_requests.interaction_id IS 'Discord interaction snowflake; the idempotency key of admission.';
COMMENT ON COLUMN video_requests.available_at IS 'Earliest time a worker may claim a pending row (backoff after rate limits).';
COMMENT ON COLUMN video_requests.duration_ms IS 'Generation time, completed_at - started_at, derived by the database.';
COMMENT ON COLUMN video_requests.counts_toward_quota IS 'Whether the request uses one of the user''s quota slots.';

-- The quota probe: newest counted rows of one user, read at most `limit` entries deep.
CREATE INDEX video_requests_quota_idx ON video_requests (user_id, created_at DESC) WHERE counts_toward_quota;
-- A user's history, newest first.
CREATE INDEX video_requests_user_history_idx ON video_requests (user_id, id DESC);
-- The worker's queue: oldest claimable pending row.
CREATE INDEX video_requests_queue_idx ON video_requests (available_at, id) WHERE status = 'pending';
-- Recovery: in-flight or undelivered rows whose lease may have expired.
CREATE INDEX video_requests_unfinished_idx ON video_requests (lease_expires_at)
    WHERE status IN ('pending', 'generating') OR (delivered_at IS NULL AND status NOT IN ('rejected', 'cancelled'));
-- Analytics and the admin list by time.
CREATE INDEX video_requests_created_at_idx ON video_requests (created_at DESC);
CREATE INDEX video_requests_guild_idx ON video_requests (guild_id, created_at DESC) WHERE guild_id IS NOT NULL;

-- ---------------------------------------------------------------------------
-- video_request_events: append-only history written in the same transaction.
-- ---------------------------------------------------------------------------
CREATE TABLE video_request_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  bigint NOT NULL REFERENCES video_requests (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind        text NOT NULL CONSTRAINT video_request_events_kind_check CHECK (kind IN (
                    'created', 'status_changed', 'refunded', 'review_changed', 'delivered', 'released', 'note')),
    from_status text,
    to_status   text,
    actor       text NOT NULL DEFAULT 'system',
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX video_request_events_request_idx ON video_request_events (request_id, id);

COMMENT ON TABLE video_request_events IS 'Append-only history of every status change and moderation action.';

CREATE FUNCTION video_request_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'video_request_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER video_request_events_no_update
    BEFORE UPDATE ON video_request_events
    FOR EACH ROW EXECUTE FUNCTION video_request_events_append_only();

-- ---------------------------------------------------------------------------
-- quota_policies: overrides of the default quota (user+guild > user > guild).
-- ---------------------------------------------------------------------------
CREATE TABLE quota_policies (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        bigint CONSTRAINT quota_policies_user_id_check CHECK (user_id > 0),
    guild_id       bigint CONSTRAINT quota_policies_guild_id_check CHECK (guild_id > 0),
    quota_limit    integer NOT NULL CONSTRAINT quota_policies_limit_check CHECK (quota_limit BETWEEN 0 AND 10000),
    quota_window   interval NOT NULL
                   CONSTRAINT quota_policies_window_check CHECK (quota_window BETWEEN interval '1 minute' AND interval '366 days'),
    max_in_flight  integer CONSTRAINT quota_policies_max_in_flight_check CHECK (max_in_flight BETWEEN 1 AND 1000),
    note           text NOT NULL DEFAULT '',
    created_by     text NOT NULL DEFAULT 'system',
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT quota_policies_has_scope CHECK (user_id IS NOT NULL OR guild_id IS NOT NULL)
);
CREATE UNIQUE INDEX quota_policies_scope_key ON quota_policies (COALESCE(user_id, 0), COALESCE(guild_id, 0));
CREATE INDEX quota_policies_guild_idx ON quota_policies (guild_id) WHERE user_id IS NULL;

COMMENT ON TABLE quota_policies IS 'Quota overrides; the most specific matching row wins over the configured default.';

-- ---------------------------------------------------------------------------
-- user_bans: who may not use the bot (everywhere, or in one guild), until when.
-- ---------------------------------------------------------------------------
CREATE TABLE user_bans (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL CONSTRAINT user_bans_user_id_check CHECK (user_id > 0),
    guild_id    bigint CONSTRAINT user_bans_guild_id_check CHECK (guild_id > 0),
    reason      text NOT NULL CONSTRAINT user_bans_reason_check CHECK (char_length(btrim(reason)) BETWEEN 1 AND 1000),
    banned_by   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz,
    lifted_at   timestamptz,
    lifted_by   text,
    CONSTRAINT user_bans_expiry_after_start CHECK (expires_at IS NULL OR expires_at > created_at),
    CONSTRAINT user_bans_lift_pair CHECK ((lifted_at IS NULL) = (lifted_by IS NULL))
);
CREATE INDEX user_bans_user_idx ON user_bans (user_id) WHERE lifted_at IS NULL;

COMMENT ON TABLE user_bans IS 'A ban is in force while not lifted and not expired; guild_id NULL means everywhere.';

-- ---------------------------------------------------------------------------
-- Lifecycle: legal transitions, derived timestamps, and the event history.
-- ---------------------------------------------------------------------------
CREATE FUNCTION video_request_transition_allowed(from_status text, to_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT (from_status, to_status) IN (
        ('pending', 'generating'), ('pending', 'failed'), ('pending', 'timeout'), ('pending', 'cancelled'),
        ('generating', 'completed'), ('generating', 'failed'), ('generating', 'timeout'), ('generating', 'cancelled'))
$$;

-- Request facts are fixed at birth; the status may only move along legal edges.
CREATE FUNCTION video_requests_guard_update() RETURNS trigger
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

CREATE TRIGGER video_requests_guard_update
    BEFORE UPDATE ON video_requests
    FOR EACH ROW EXECUTE FUNCTION video_requests_guard_update();

-- New rows are born pending (admitted) or rejected; the database stamps a terminal birth.
CREATE FUNCTION video_requests_guard_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE TRIGGER video_requests_guard_insert
    BEFORE INSERT ON video_requests
    FOR EACH ROW EXECUTE FUNCTION video_requests_guard_insert();

-- Who did it and why: services set these transaction-locally (set_config(..., true)).
CREATE FUNCTION veobot_actor() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT COALESCE(NULLIF(current_setting('veobot.actor', true), ''), 'system') $$;

CREATE FUNCTION veobot_reason() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT NULLIF(current_setting('veobot.reason', true), '') $$;

CREATE FUNCTION video_requests_record_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    reason text := veobot_reason();
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO video_request_events (request_id, kind, to_status, actor, detail)
        VALUES (NEW.id, 'created', NEW.status, veobot_actor(),
                jsonb_strip_nulls(jsonb_build_object('error_code', NEW.error_code, 'reason', reason)));
        RETURN NULL;
    END IF;

    IF NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO video_request_events (request_id, kind, from_status, to_status, actor, detail)
        VALUES (NEW.id, 'status_changed', OLD.status, NEW.status, veobot_actor(),
                jsonb_strip_nulls(jsonb_build_object(
                    'error_code', NEW.error_code, 'error_message', left(NEW.error_message, 500),
                    'operation_name', CASE WHEN NEW.status = 'generating' THEN NEW.operation_name END,
                    'reason', reason)));
    END IF;
    IF OLD.counts_toward_quota AND NOT NEW.counts_toward_quota THEN
        INSERT INTO video_request_events (request_id, kind, actor, detail)
        VALUES (NEW.id, 'refunded', veobot_actor(), jsonb_strip_nulls(jsonb_build_object('reason', reason)));
    END IF;
    IF NEW.review_status IS DISTINCT FROM OLD.review_status THEN
        INSERT INTO video_request_events (request_id, kind, actor, detail)
        VALUES (NEW.id, 'review_changed', veobot_actor(), jsonb_strip_nulls(jsonb_build_object(
            'from', OLD.review_status, 'to', NEW.review_status, 'reason', reason)));
    END IF;
    IF NEW.delivered_at IS NOT NULL AND OLD.delivered_at IS NULL THEN
        INSERT INTO video_request_events (request_id, kind, actor, detail)
        VALUES (NEW.id, 'delivered', veobot_actor(), jsonb_strip_nulls(jsonb_build_object(
            'method', NEW.delivery_method, 'message_id', NEW.discord_message_id::text, 'error', NEW.delivery_error)));
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER video_requests_record_events
    AFTER INSERT OR UPDATE ON video_requests
    FOR EACH ROW EXECUTE FUNCTION video_requests_record_events();

-- ---------------------------------------------------------------------------
-- Quota: policy resolution, the usage probe, and admission in one round trip.
-- ---------------------------------------------------------------------------

-- The most specific policy for (user, guild), or the defaults passed by the caller.
CREATE FUNCTION resolve_quota_policy(
    p_user_id bigint, p_guild_id bigint,
    p_default_limit integer, p_default_window interval, p_default_max_in_flight integer,
    OUT quota_limit integer, OUT quota_window interval, OUT max_in_flight integer)
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(p.quota_limit, p_default_limit),
           COALESCE(p.quota_window, p_default_window),
           CASE WHEN p.id IS NULL THEN NULLIF(p_default_max_in_flight, 0) ELSE p.max_in_flight END
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT qp.id, qp.quota_limit, qp.quota_window, qp.max_in_flight
        FROM quota_policies qp
        WHERE (qp.user_id = p_user_id AND (qp.guild_id = p_guild_id OR qp.guild_id IS NULL))
           OR (qp.user_id IS NULL AND qp.guild_id = p_guild_id)
        ORDER BY (qp.user_id IS NOT NULL) DESC, (qp.guild_id IS NOT NULL) DESC
        LIMIT 1
    ) AS p ON true
$$;

-- How many counted requests the user has in the window, reading at most p_limit index
-- entries; reset_at is when the oldest of those leaves the window (a slot frees).
CREATE FUNCTION quota_usage(p_user_id bigint, p_limit integer, p_window interval, p_now timestamptz,
                            OUT used integer, OUT reset_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer, min(recent.created_at) + p_window
    FROM (
        SELECT vr.created_at
        FROM video_requests vr
        WHERE vr.user_id = p_user_id AND vr.counts_toward_quota AND vr.created_at > p_now - p_window
        ORDER BY vr.created_at DESC
        LIMIT GREATEST(p_limit, 1)
    ) AS recent
$$;

-- The ban in force for a user in a guild (NULL guild = DM: only global bans apply).
CREATE FUNCTION active_ban(p_user_id bigint, p_guild_id bigint, p_now timestamptz)
RETURNS user_bans
LANGUAGE sql STABLE AS $$
    SELECT b.* FROM user_bans b
    WHERE b.user_id = p_user_id AND b.lifted_at IS NULL
      AND (b.expires_at IS NULL OR b.expires_at > p_now)
      AND (b.guild_id IS NULL OR b.guild_id = p_guild_id)
    ORDER BY b.expires_at DESC NULLS FIRST
    LIMIT 1
$$;

CREATE TYPE admission_result AS (
    request_id  bigint,
    admitted    boolean,
    duplicate   boolean,
    status      text,
    reason_code text,
    reason      text,
    used        integer,
    quota_limit integer,
    remaining   integer,
    reset_at    timestamptz
);

-- Admission in one call: idempotent on the interaction id, refuses banned users, resolves
-- the policy, serialises the user's admissions with a transaction lock taken *before* the
-- count (a later statement, hence a fresh snapshot under READ COMMITTED), then inserts the
-- pending row or records a rejected one.
CREATE FUNCTION admit_video_request(
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

COMMENT ON FUNCTION admit_video_request IS
    'Race-free, idempotent admission in one round trip; see migrations_sql/README.md.';
