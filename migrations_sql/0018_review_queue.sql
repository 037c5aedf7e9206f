-- The review queue: one list of what needs a moderator (user reports, Veo safety-filter hits,
-- blocked-term hits, a user refused again and again, appeals), each item claimed by one
-- moderator at a time and resolved with a required reason; moderators' notes on items;
-- appeals of bans; the notices that carry a decision back to the user; and the moderators'
-- audit log, written by triggers so that no change made as a moderator can miss it.

-- ---------------------------------------------------------------------------
-- appeals: a banned user's /appeal. One open appeal per ban.
-- ---------------------------------------------------------------------------
CREATE TABLE appeals (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ban_id           bigint NOT NULL REFERENCES user_bans (id) ON DELETE CASCADE,
    user_id          bigint NOT NULL CONSTRAINT appeals_user_id_check CHECK (user_id > 0),
    -- The /appeal interaction that filed it: Discord's retry of one interaction files one appeal.
    interaction_id   bigint CONSTRAINT appeals_interaction_id_key UNIQUE,
    body             text NOT NULL CONSTRAINT appeals_body_check CHECK (char_length(btrim(body)) BETWEEN 1 AND 1000),
    state            text NOT NULL DEFAULT 'open'
                     CONSTRAINT appeals_state_check CHECK (state IN ('open', 'granted', 'denied')),
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    decided_at       timestamptz,
    decided_by       text,
    decision_reason  text,
    CONSTRAINT appeals_decision_complete CHECK (
        (state = 'open') = (decided_at IS NULL)
        AND (decided_at IS NULL) = (decided_by IS NULL)
        AND (decided_at IS NULL) = (decision_reason IS NULL))
);
CREATE UNIQUE INDEX appeals_one_open_per_ban ON appeals (ban_id) WHERE state = 'open';
CREATE INDEX appeals_user_idx ON appeals (user_id, id DESC);

COMMENT ON TABLE appeals IS 'Appeals of bans by the banned user (/appeal); one open appeal per ban.';

-- ---------------------------------------------------------------------------
-- review_items: the queue. An item is about one subject (subject_key): a request for reports
-- and safety-filter hits, a user for blocked-term hits and repeated refusals, an appeal.
-- Further hits on an open item are folded into it (hits, last_hit_at), not queued again.
-- ---------------------------------------------------------------------------
CREATE TABLE review_items (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind               text NOT NULL CONSTRAINT review_items_kind_check CHECK (kind IN (
                           'report', 'safety_filter', 'blocked_term', 'repeated_refusals', 'appeal')),
    subject_key        text NOT NULL,
    user_id            bigint NOT NULL CONSTRAINT review_items_user_id_check CHECK (user_id > 0),
    guild_id           bigint,
    -- The request under review; for a user's item, their latest refused request.
    request_id         bigint REFERENCES video_requests (id) ON DELETE SET NULL,
    appeal_id          bigint REFERENCES appeals (id) ON DELETE CASCADE,
    summary            text NOT NULL,
    hits               integer NOT NULL DEFAULT 1 CONSTRAINT review_items_hits_check CHECK (hits >= 1),
    state              text NOT NULL DEFAULT 'open'
                       CONSTRAINT review_items_state_check CHECK (state IN ('open', 'resolved')),
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_hit_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- A claim is one moderator's for claimed_until; after that anyone may take the item.
    claimed_by         text,
    claimed_until      timestamptz,
    decision           text CONSTRAINT review_items_decision_check CHECK (decision IN (
                           'approve', 'remove_output', 'ban', 'dismiss')),
    resolution_reason  text CONSTRAINT review_items_reason_check
                       CHECK (char_length(btrim(resolution_reason)) BETWEEN 1 AND 1000),
    resolved_by        text,
    resolved_at        timestamptz,
    -- Posted to the moderators' Discord channel (MOD_CHANNEL_ID) at this time.
    announced_at       timestamptz,
    CONSTRAINT review_items_claim_pair CHECK ((claimed_by IS NULL) = (claimed_until IS NULL)),
    CONSTRAINT review_items_resolution_complete CHECK (
        (state = 'resolved') = (decision IS NOT NULL)
        AND (decision IS NULL) = (resolution_reason IS NULL)
        AND (decision IS NULL) = (resolved_by IS NULL)
        AND (decision IS NULL) = (resolved_at IS NULL)),
    CONSTRAINT review_items_resolved_unclaimed CHECK (state = 'open' OR claimed_by IS NULL)
);
CREATE UNIQUE INDEX review_items_one_open ON review_items (kind, subject_key) WHERE state = 'open';
-- The queue page and "take the next": oldest waiting first, all kinds or one.
CREATE INDEX review_items_open_idx ON review_items (created_at, id) WHERE state = 'open';
CREATE INDEX review_items_open_kind_idx ON review_items (kind, created_at, id) WHERE state = 'open';
CREATE INDEX review_items_claimed_idx ON review_items (claimed_by, created_at) WHERE state = 'open' AND claimed_by IS NOT NULL;
CREATE INDEX review_items_resolved_idx ON review_items (resolved_at DESC) WHERE state = 'resolved';
CREATE INDEX review_items_request_idx ON review_items (request_id);
CREATE INDEX review_items_user_idx ON review_items (user_id, id DESC);
CREATE INDEX review_items_unannounced_idx ON review_items (id) WHERE announced_at IS NULL AND state = 'open';

COMMENT ON TABLE review_items IS
    'The moderators'' review queue; items are made by triggers (reports, safety filter, blocked terms, refusals, appeals).';

CREATE TABLE review_notes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id     bigint NOT NULL REFERENCES review_items (id) ON DELETE CASCADE,
    author      text NOT NULL,
    body        text NOT NULL CONSTRAINT review_notes_body_check CHECK (char_length(btrim(body)) BETWEEN 1 AND 2000),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX review_notes_item_idx ON review_notes (item_id, id);

-- ---------------------------------------------------------------------------
-- user_notices: what a moderator's decision tells the user. The bot sends it by DM; when the
-- user does not accept DMs it is shown at their next command instead.
-- ---------------------------------------------------------------------------
CREATE TABLE user_notices (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint NOT NULL CONSTRAINT user_notices_user_id_check CHECK (user_id > 0),
    appeal_id       bigint REFERENCES appeals (id) ON DELETE CASCADE,
    body            text NOT NULL CONSTRAINT user_notices_body_check CHECK (char_length(btrim(body)) BETWEEN 1 AND 2000),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The sending bot's lease, or the retry backoff after Discord could not be reached.
    not_before      timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        integer NOT NULL DEFAULT 0 CONSTRAINT user_notices_attempts_check CHECK (attempts >= 0),
    -- Discord refused the DM (the user does not accept them): kept for their next command.
    dm_refused_at   timestamptz,
    last_error      text,
    delivered_at    timestamptz,
    delivered_via   text CONSTRAINT user_notices_delivered_via_check CHECK (delivered_via IN ('dm', 'next_command')),
    CONSTRAINT user_notices_delivery_pair CHECK ((delivered_at IS NULL) = (delivered_via IS NULL))
);
CREATE INDEX user_notices_to_send_idx ON user_notices (not_before) WHERE delivered_at IS NULL AND dm_refused_at IS NULL;
CREATE INDEX user_notices_owed_idx ON user_notices (user_id) WHERE delivered_at IS NULL;

COMMENT ON TABLE user_notices IS 'Messages to users about moderators'' decisions (appeals), sent by the bot.';

-- ---------------------------------------------------------------------------
-- Queue items from what happens. review_item_hit opens an item for a subject, or folds the
-- hit into the open one.
-- ---------------------------------------------------------------------------
CREATE FUNCTION review_item_hit(p_kind text, p_subject_key text, p_user_id bigint, p_guild_id bigint,
                                p_request_id bigint, p_appeal_id bigint, p_summary text) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    INSERT INTO review_items AS i (kind, subject_key, user_id, guild_id, request_id, appeal_id, summary)
    VALUES (p_kind, p_subject_key, p_user_id, p_guild_id, p_request_id, p_appeal_id, left(p_summary, 300))
    ON CONFLICT (kind, subject_key) WHERE state = 'open' DO UPDATE
        SET hits = i.hits + 1, last_hit_at = clock_timestamp(),
            request_id = COALESCE(EXCLUDED.request_id, i.request_id), summary = EXCLUDED.summary
    RETURNING id
$$;

CREATE FUNCTION review_queue_report() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_user bigint;
    v_guild bigint;
BEGIN
    SELECT user_id, guild_id INTO v_user, v_guild FROM video_requests WHERE id = NEW.request_id;
    PERFORM review_item_hit('report', 'request:' || NEW.request_id, v_user, v_guild, NEW.request_id, NULL,
                            'reported: ' || NEW.reason);
    RETURN NULL;
END;
$$;
CREATE TRIGGER reports_review_queue AFTER INSERT ON reports
    FOR EACH ROW EXECUTE FUNCTION review_queue_report();

-- A user refused this many times within an hour (bans, quota, in-flight cap; blocked terms
-- have items of their own) is hammering the bot or probing it: one item for them.
CREATE FUNCTION review_repeated_refusals_threshold() RETURNS integer
LANGUAGE sql IMMUTABLE AS 'SELECT 5';

CREATE FUNCTION review_queue_request() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_refusals integer;
BEGIN
    IF NEW.safety_filtered_count > 0 THEN
        PERFORM review_item_hit('safety_filter', 'request:' || NEW.id, NEW.user_id, NEW.guild_id, NEW.id, NULL,
                                'Veo safety filter: ' || COALESCE(array_to_string(NEW.safety_filtered_reasons, '; '),
                                                                  NEW.safety_filtered_count || ' output(s) filtered'));
    END IF;
    IF TG_OP = 'INSERT' AND NEW.status = 'rejected' THEN
        IF NEW.error_code = 'blocked_term' THEN
            PERFORM review_item_hit('blocked_term', 'user:' || NEW.user_id, NEW.user_id, NEW.guild_id, NEW.id, NULL,
                                    COALESCE(NEW.error_message, 'blocked term'));
        ELSE
            SELECT count(*) INTO v_refusals FROM (
                SELECT 1 FROM video_requests
                WHERE user_id = NEW.user_id AND status = 'rejected' AND error_code <> 'blocked_term'
                  AND created_at > NEW.created_at - interval '1 hour'
                ORDER BY id DESC LIMIT review_repeated_refusals_threshold()) AS recent;
            IF v_refusals >= review_repeated_refusals_threshold() THEN
                PERFORM review_item_hit('repeated_refusals', 'user:' || NEW.user_id, NEW.user_id, NEW.guild_id,
                                        NEW.id, NULL,
                                        format('refused %s times within an hour; latest: %s', v_refusals,
                                               COALESCE(NEW.error_message, NEW.error_code)));
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
-- WHEN clauses keep the function off the hot path: admissions that pass and every worker
-- update without a new safety-filter hit never call it.
CREATE TRIGGER video_requests_review_queue_insert AFTER INSERT ON video_requests
    FOR EACH ROW WHEN (NEW.status = 'rejected' OR NEW.safety_filtered_count > 0)
    EXECUTE FUNCTION review_queue_request();
CREATE TRIGGER video_requests_review_queue_update AFTER UPDATE OF safety_filtered_count ON video_requests
    FOR EACH ROW WHEN (NEW.safety_filtered_count > 0 AND OLD.safety_filtered_count = 0)
    EXECUTE FUNCTION review_queue_request();

CREATE FUNCTION review_queue_appeal() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_guild bigint;
BEGIN
    SELECT guild_id INTO v_guild FROM user_bans WHERE id = NEW.ban_id;
    PERFORM review_item_hit('appeal', 'appeal:' || NEW.id, NEW.user_id, v_guild, NULL, NEW.id,
                            'appeal of ban #' || NEW.ban_id || ': ' || NEW.body);
    RETURN NULL;
END;
$$;
CREATE TRIGGER appeals_review_queue AFTER INSERT ON appeals
    FOR EACH ROW EXECUTE FUNCTION review_queue_appeal();

-- ---------------------------------------------------------------------------
-- moderation_log: who did what, when, why, with the row before and after. Written by the
-- triggers below for every change made while veobot.moderator is set (the panel sets it for
-- every change a signed-in moderator makes, the services for theirs); append-only.
-- ---------------------------------------------------------------------------
CREATE TABLE moderation_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor            text NOT NULL,
    action           text NOT NULL,
    target_table     text NOT NULL,
    target_id        bigint,
    subject_user_id  bigint,  -- the Discord user the changed row is about, when it names one
    reason           text,
    before           jsonb,   -- the changed columns' old values (the whole row for a deletion)
    after            jsonb    -- their new values (the whole row for an insertion)
);
CREATE INDEX moderation_log_actor_idx ON moderation_log (actor, id DESC);
CREATE INDEX moderation_log_action_idx ON moderation_log (action, id DESC);
CREATE INDEX moderation_log_target_idx ON moderation_log (target_table, target_id, id DESC);
CREATE INDEX moderation_log_subject_idx ON moderation_log (subject_user_id, id DESC) WHERE subject_user_id IS NOT NULL;
CREATE INDEX moderation_log_at_idx ON moderation_log (at);

COMMENT ON TABLE moderation_log IS
    'Audit log of moderators'' actions (who, what, when, why, before/after); written by triggers, append-only.';

CREATE FUNCTION moderation_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'moderation_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER moderation_log_no_update BEFORE UPDATE ON moderation_log
    FOR EACH ROW EXECUTE FUNCTION moderation_log_append_only();

CREATE FUNCTION moderation_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- The stored text-search vector is derived from the prompt, which never changes.
    v_old     jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) - 'prompt_tsv' END;
    v_new     jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) - 'prompt_tsv' END;
    v_before  jsonb := v_old;
    v_after   jsonb := v_new;
    v_row     jsonb := COALESCE(v_new, v_old);
BEGIN
    IF TG_OP = 'UPDATE' THEN
        SELECT jsonb_object_agg(o.key, o.value), jsonb_object_agg(o.key, v_new -> o.key)
          INTO v_before, v_after
          FROM jsonb_each(v_old) AS o
         WHERE o.value IS DISTINCT FROM v_new -> o.key;
        IF v_before IS NULL THEN
            RETURN NULL;  -- nothing changed
        END IF;
    END IF;
    INSERT INTO moderation_log (actor, action, target_table, target_id, subject_user_id, reason, before, after)
    VALUES (current_setting('veobot.moderator'),
            COALESCE(NULLIF(current_setting('veobot.action', true), ''), lower(TG_OP)),
            TG_TABLE_NAME, (v_row ->> 'id')::bigint,
            COALESCE((v_row ->> 'user_id')::bigint, (v_row ->> 'reporter_id')::bigint),
            veobot_reason(), v_before, v_after);
    RETURN NULL;
END;
$$;

-- Only while a moderator acts: the WHEN clause costs the workers' updates nothing more.
CREATE TRIGGER video_requests_moderation_audit AFTER UPDATE ON video_requests
    FOR EACH ROW WHEN (current_setting('veobot.moderator', true) <> '') EXECUTE FUNCTION moderation_audit();
CREATE TRIGGER user_bans_moderation_audit AFTER INSERT OR UPDATE OR DELETE ON user_bans
    FOR EACH ROW WHEN (current_setting('veobot.moderator', true) <> '') EXECUTE FUNCTION moderation_audit();
CREATE TRIGGER quota_policies_moderation_audit AFTER INSERT OR UPDATE OR DELETE ON quota_policies
    FOR EACH ROW WHEN (current_setting('veobot.moderator', true) <> '') EXECUTE FUNCTION moderation_audit();
CREATE TRIGGER blocked_terms_moderation_audit AFTER INSERT OR UPDATE OR DELETE ON blocked_terms
    FOR EACH ROW WHEN (current_setting('veobot.moderator', true) <> '') EXECUTE FUNCTION moderation_audit();
CREATE TRIGGER reports_moderation_audit AFTER UPDATE OR DELETE ON reports
    FOR EACH ROW WHEN (current_setting('veobot.moderator', true) <> '') EXECUTE FUNCTION moderation_audit();
CREATE TRIGGER review_items_moderation_audit AFTER INSERT OR UPDATE OR DELETE ON review_items
    FOR EACH ROW WHEN (current_setting('veobot.moderator', true) <> '') EXECUTE FUNCTION moderation_audit();
CREATE TRIGGER review_notes_moderation_audit AFTER INSERT OR UPDATE OR DELETE ON review_notes
    FOR EACH ROW WHEN (current_setting('veobot.moderator', true) <> '') EXECUTE FUNCTION moderation_audit();
CREATE TRIGGER appeals_moderation_audit AFTER UPDATE OR DELETE ON appeals
    FOR EACH ROW WHEN (current_setting('veobot.moderator', true) <> '') EXECUTE FUNCTION moderation_audit();
CREATE TRIGGER journal_quarantine_moderation_audit AFTER UPDATE OR DELETE ON journal_quarantine
    FOR EACH ROW WHEN (current_setting('veobot.moderator', true) <> '') EXECUTE FUNCTION moderation_audit();
