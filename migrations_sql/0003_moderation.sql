-- Moderation: full-text search and list indexes for the admin, blocked prompt terms
-- (enforced at admission), new event kinds, and the outbox through which the web process
-- asks the bot to delete a Discord message (the web process never holds the bot token).

-- ---------------------------------------------------------------------------
-- Indexes for the moderation list. The list is ordered newest first by created_at, so
-- every filter it offers has an index that yields rows in that order: the first page and
-- the bounded count read a few thousand index entries, never the whole table.
-- ---------------------------------------------------------------------------
-- Full-text search over prompts. The expression (with its constant configuration) must be
-- written exactly like this in queries for the planner to use the index.
CREATE INDEX video_requests_prompt_fts_idx ON video_requests USING gin (to_tsvector('english'::regconfig, prompt));
-- A rare word must be estimated as rare, or the planner scans the newest rows running
-- to_tsvector on each until it finds a page of matches (minutes at 10M rows): keep ten
-- times more lexeme statistics than the default.
ALTER INDEX video_requests_prompt_fts_idx ALTER COLUMN 1 SET STATISTICS 1000;
CREATE INDEX video_requests_status_created_idx ON video_requests (status, created_at DESC);
-- Nearly every request stays unreviewed; that value is served by created_at and left out.
CREATE INDEX video_requests_review_created_idx ON video_requests (review_status, created_at DESC)
    WHERE review_status <> 'unreviewed';
CREATE INDEX video_requests_safety_created_idx ON video_requests (created_at DESC) WHERE safety_filtered_count > 0;
-- The dashboard's aggregates over a period read only this index (index-only scans), never the table.
CREATE INDEX video_requests_stats_idx ON video_requests (created_at)
    INCLUDE (status, user_id, guild_id, duration_ms, safety_filtered_count);

-- ---------------------------------------------------------------------------
-- Event kinds for moderation actions that change no column of the request itself.
-- ---------------------------------------------------------------------------
ALTER TABLE video_request_events DROP CONSTRAINT video_request_events_kind_check;
ALTER TABLE video_request_events ADD CONSTRAINT video_request_events_kind_check CHECK (kind IN (
    'created', 'status_changed', 'refunded', 'review_changed', 'delivered', 'released', 'note',
    'user_banned', 'output_removed'));

-- ---------------------------------------------------------------------------
-- discord_actions: an outbox the bot consumes. A removal inserts its row in the same
-- transaction as the review change, so the message is deleted if and only if the
-- removal committed.
-- ---------------------------------------------------------------------------
CREATE TABLE discord_actions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id    bigint NOT NULL REFERENCES video_requests (id) ON DELETE CASCADE,
    action        text NOT NULL CONSTRAINT discord_actions_action_check CHECK (action IN ('delete_message')),
    channel_id    bigint NOT NULL CONSTRAINT discord_actions_channel_id_check CHECK (channel_id > 0),
    message_id    bigint NOT NULL CONSTRAINT discord_actions_message_id_check CHECK (message_id > 0),
    requested_by  text NOT NULL,
    reason        text NOT NULL CONSTRAINT discord_actions_reason_check CHECK (char_length(btrim(reason)) BETWEEN 1 AND 1000),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    done_at       timestamptz,
    attempts      integer NOT NULL DEFAULT 0 CONSTRAINT discord_actions_attempts_check CHECK (attempts >= 0),
    last_error    text
);
-- The bot's queue: oldest undone action first.
CREATE INDEX discord_actions_pending_idx ON discord_actions (id) WHERE done_at IS NULL;
-- Removing the same output twice queues one deletion, not two.
CREATE UNIQUE INDEX discord_actions_once_key ON discord_actions (request_id, action, message_id);

COMMENT ON TABLE discord_actions IS
    'Outbox of Discord operations requested by moderators; the bot performs them and sets done_at.';

-- ---------------------------------------------------------------------------
-- blocked_terms: words or regular expressions refused at admission, everywhere or in one guild.
-- ---------------------------------------------------------------------------

-- Why a pattern cannot be used, or NULL when it can. Patterns are compiled here, by the
-- engine that will run them. PostgreSQL's regex engine does not backtrack except for
-- back-references, so refusing back-references, bounding the pattern length and timing a
-- probe on adversarial prompts of the longest storable length keeps matching cheap; every
-- veobot connection also carries a statement_timeout.
CREATE FUNCTION blocked_term_problem(p_kind text, p_pattern text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_started timestamptz;
    v_ms      numeric;
    v_probe   text;
BEGIN
    IF p_pattern IS NULL OR btrim(p_pattern) = '' THEN
        RETURN 'the term is empty';
    END IF;
    IF p_kind = 'word' THEN
        IF char_length(p_pattern) > 100 THEN
            RETURN format('a word or phrase must be at most 100 characters (got %s)', char_length(p_pattern));
        END IF;
        RETURN NULL;
    END IF;
    IF p_kind <> 'regex' THEN
        RETURN format('unknown kind %L (word or regex)', p_kind);
    END IF;
    IF char_length(p_pattern) > 200 THEN
        RETURN format('a regular expression must be at most 200 characters (got %s)', char_length(p_pattern));
    END IF;
    IF p_pattern ~ '^(\*\*\*|\(\?[a-z]+\))' THEN
        RETURN 'embedded options (***: or (?i) at the start) are not allowed: matching is always case-insensitive';
    END IF;
    IF p_pattern ~ '\\[1-9]' THEN
        RETURN 'back-references (\1 ... \9) are not allowed: they can make matching take exponential time';
    END IF;
    BEGIN
        IF '' ~* p_pattern THEN
            RETURN 'the pattern matches an empty prompt, so it would block every request';
        END IF;
    EXCEPTION WHEN invalid_regular_expression OR program_limit_exceeded THEN
        RETURN SQLERRM;
    END;
    v_started := clock_timestamp();
    FOREACH v_probe IN ARRAY ARRAY[repeat('a', 4000), repeat('ab ', 1333), repeat('a1_-', 1000),
                                   repeat('x ', 1999) || '!'] LOOP
        PERFORM v_probe ~* p_pattern;
    END LOOP;
    v_ms := extract(epoch FROM clock_timestamp() - v_started) * 1000;
    IF v_ms > 100 THEN
        RETURN format('the pattern is too slow to match (%s ms on long prompts); simplify it', round(v_ms));
    END IF;
    RETURN NULL;
END;
$$;

CREATE TABLE blocked_terms (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id       bigint CONSTRAINT blocked_terms_guild_id_check CHECK (guild_id > 0),
    kind           text NOT NULL CONSTRAINT blocked_terms_kind_check CHECK (kind IN ('word', 'regex')),
    pattern        text NOT NULL,
    -- What admission runs: a word matches whole (not inside another word), case-insensitively.
    match_pattern  text NOT NULL GENERATED ALWAYS AS (
                       CASE WHEN kind = 'word'
                            THEN '(^|[^[:alnum:]_])' || regexp_replace(pattern, '([.^$*+?()\[\]{}|\\-])', '\\\1', 'g')
                                 || '($|[^[:alnum:]_])'
                            ELSE pattern END) STORED,
    message        text NOT NULL DEFAULT '' CONSTRAINT blocked_terms_message_check CHECK (char_length(message) <= 300),
    enabled        boolean NOT NULL DEFAULT true,
    created_by     text NOT NULL DEFAULT 'system',
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX blocked_terms_scope_key ON blocked_terms (COALESCE(guild_id, 0), kind, lower(pattern));

COMMENT ON TABLE blocked_terms IS
    'Prompt terms refused at admission; guild_id NULL means everywhere. Validated on write by blocked_term_problem().';

CREATE FUNCTION blocked_terms_validate() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_problem text;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.kind = OLD.kind AND NEW.pattern = OLD.pattern THEN
        RETURN NEW;
    END IF;
    v_problem := blocked_term_problem(NEW.kind, NEW.pattern);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = 'check_violation', CONSTRAINT = 'blocked_terms_pattern_valid';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER blocked_terms_validate
    BEFORE INSERT OR UPDATE ON blocked_terms
    FOR EACH ROW EXECUTE FUNCTION blocked_terms_validate();

-- The refusal message for the first enabled term (global or this guild's) that the prompt
-- or negative prompt matches, or NULL. Case-insensitive. PostgreSQL caches only 32
-- compiled regular expressions per session, so testing each term separately would
-- recompile them on every admission once there are more; the terms are tested as one
-- alternation (one cached regex per scope), and only a refused prompt looks for the term.
CREATE FUNCTION blocked_term_refusal(p_guild_id bigint, p_prompt text, p_negative_prompt text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_any text;
BEGIN
    SELECT string_agg('(?:' || t.match_pattern || ')', '|' ORDER BY t.id) INTO v_any
    FROM blocked_terms t
    WHERE t.enabled AND (t.guild_id IS NULL OR t.guild_id = p_guild_id);
    IF v_any IS NULL OR NOT (p_prompt ~* v_any OR COALESCE(p_negative_prompt, '') ~* v_any) THEN
        RETURN NULL;
    END IF;
    RETURN (
        SELECT 'prompt refused: '
               || CASE WHEN t.message <> '' THEN t.message
                       WHEN t.kind = 'word' THEN format('"%s" is not allowed', t.pattern)
                       ELSE 'it matches a blocked pattern' END
        FROM blocked_terms t
        WHERE t.enabled AND (t.guild_id IS NULL OR t.guild_id = p_guild_id)
          AND (p_prompt ~* t.match_pattern OR p_negative_prompt ~* t.match_pattern)
        ORDER BY t.id
        LIMIT 1);
END;
$$;

-- ---------------------------------------------------------------------------
-- Admission: the 0001 function, plus the blocked-term check after the ban check. Same
-- signature and return type; still one round trip.
-- ---------------------------------------------------------------------------
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
