-- Fair share: the worker's claim starts waiting requests in turns between users instead of in
-- arrival order, so one user with fifty queued requests no longer holds everyone else back.
--
-- The order is start-time fair queueing over "rounds" (virtual time), stamped once, when a row
-- is inserted, so that the claim and the queue position stay single index range reads:
--   * fair_share_clock.round (V) is the highest round started so far; it only grows.
--   * A user's pending request takes round max(V - priority, the user's last round + 1): a
--     user who has requests waiting gets one per round, so users take turns; a user arriving
--     (or returning after a pause) joins the current round, never an old one, so a pause earns
--     no burst of catch-up starts. Priority is a head start of that many rounds, not a lane of
--     its own: a priority user still gets one start per round once it has used the head start.
--   * Within a round, fair_turn interleaves guilds: a guild's first request in the round takes
--     turn 0, its second turn 1 and so on, so every guild present in a round gets its first start
--     before any guild gets its second. Direct messages count as a guild of one.
--   * The claim takes due pending rows in (fair_round, fair_turn, id) order, the new index's.
-- A user's last round is the round of the user's newest row (video_requests_user_history_idx,
-- one probe): a rejected row carries the user's round unchanged, so the newest row always holds it.
-- Why nothing starves: docs/ARCHITECTURE.md, "The start order".

CREATE TABLE fair_share_clock (
    only_row boolean PRIMARY KEY DEFAULT true CONSTRAINT fair_share_clock_one_row CHECK (only_row),
    round bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE fair_share_clock IS
    'The fair-share virtual time: the highest round a started request had (one row; only grows).';
INSERT INTO fair_share_clock DEFAULT VALUES;

-- Constant defaults: no table rewrite.
ALTER TABLE video_requests
    ADD COLUMN fair_round bigint NOT NULL DEFAULT 0,
    ADD COLUMN fair_turn integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN video_requests.fair_round IS
    'Fair-share round this request waits in (set on insert; a rejected row carries its user''s round).';
COMMENT ON COLUMN video_requests.fair_turn IS
    'Its guild''s turn within the round: guilds interleave within a round (set on insert).';

-- Requests already waiting keep their arrival order within each user, in turns between users.
WITH ranked AS (
    SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY available_at, id) - 1 - priority AS round
    FROM video_requests WHERE status = 'pending'
), turned AS (
    SELECT r.id, r.round,
           row_number() OVER (PARTITION BY COALESCE(v.guild_id, -v.user_id), r.round ORDER BY r.id) - 1 AS turn
    FROM ranked r JOIN video_requests v USING (id)
)
UPDATE video_requests v SET fair_round = t.round, fair_turn = t.turn FROM turned t WHERE v.id = t.id;

-- The claim's order, and a request's position (how many come before it).
CREATE INDEX video_requests_fair_queue_idx ON video_requests (fair_round, fair_turn, id) WHERE status = 'pending';
-- A guild's last turn in a round (one probe at insert).
CREATE INDEX video_requests_fair_guild_idx ON video_requests (COALESCE(guild_id, -user_id), fair_round, fair_turn)
    WHERE status = 'pending';

CREATE FUNCTION video_requests_take_turn() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_clock bigint;
    v_last  bigint;
BEGIN
    SELECT fair_round INTO v_last FROM video_requests WHERE user_id = NEW.user_id ORDER BY id DESC LIMIT 1;
    IF NEW.status <> 'pending' THEN
        -- Carried, so that the user's newest row always holds the user's last round.
        NEW.fair_round := COALESCE(v_last, 0);
        NEW.fair_turn := 0;
        RETURN NEW;
    END IF;
    SELECT COALESCE(max(round), 0) INTO v_clock FROM fair_share_clock;  -- 0 if its row were ever lost
    NEW.fair_round := GREATEST(v_clock - NEW.priority, v_last + 1);  -- GREATEST ignores a NULL v_last
    -- ORDER BY ... LIMIT 1 rather than max(): the index's order answers it with one entry whatever
    -- the statistics say (with none, max() was planned as a read of the guild's whole round).
    SELECT fair_turn + 1 INTO NEW.fair_turn FROM video_requests
    WHERE status = 'pending' AND COALESCE(guild_id, -user_id) = COALESCE(NEW.guild_id, -NEW.user_id)
      AND fair_round = NEW.fair_round
    ORDER BY fair_turn DESC LIMIT 1;
    NEW.fair_turn := COALESCE(NEW.fair_turn, 0);
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION video_requests_take_turn IS
    'Stamps a new request''s fair-share round and turn (the start order; docs/ARCHITECTURE.md).';

-- Named to run after video_requests_guard_insert (BEFORE triggers run in name order).
CREATE TRIGGER video_requests_take_turn BEFORE INSERT ON video_requests
    FOR EACH ROW EXECUTE FUNCTION video_requests_take_turn();

-- The claim: as 0010, but pending rows are taken in the fair order, and the clock advances to
-- the highest round it starts (under the start lock, so starts never race on it).
CREATE OR REPLACE FUNCTION claim_video_request(
    p_worker text, p_lease interval, p_sources text[], p_max_concurrent integer, p_max_starts_per_minute integer,
    p_limit integer DEFAULT 1)
RETURNS SETOF video_requests
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_now      timestamptz := clock_timestamp();
    v_ids      bigint[];
    v_more     bigint[];
    v_rounds   bigint[];
    v_room     integer;
    v_busy     integer;
    v_newest   bigint;
    v_probe    timestamptz;
    v_in_window integer;
BEGIN
    SELECT array_agg(id) INTO v_ids FROM (
        SELECT id FROM video_requests
        WHERE delivered_at IS NULL AND status IN ('completed', 'failed', 'timeout', 'cancelled')
          AND source = ANY (p_sources) AND (lease_expires_at IS NULL OR lease_expires_at < v_now)
        ORDER BY id LIMIT p_limit
        FOR UPDATE SKIP LOCKED) AS deliverable;
    v_ids := COALESCE(v_ids, '{}');

    IF cardinality(v_ids) < p_limit THEN
        SELECT array_agg(id) INTO v_more FROM (
            SELECT id FROM video_requests
            WHERE status = 'generating' AND (lease_expires_at IS NULL OR lease_expires_at < v_now)
            ORDER BY lease_expires_at NULLS FIRST LIMIT p_limit - cardinality(v_ids)
            FOR UPDATE SKIP LOCKED) AS resumable;
        v_ids := v_ids || COALESCE(v_more, '{}');
    END IF;

    IF cardinality(v_ids) < p_limit THEN
        -- Rows backed off (available_at ahead) or under a live lease keep their place and are
        -- stepped over: there are few of them (released after a 429, or being started).
        SELECT array_agg(id ORDER BY fair_round, fair_turn, id), array_agg(fair_round ORDER BY fair_round, fair_turn, id)
          INTO v_more, v_rounds FROM (
            SELECT id, fair_round, fair_turn FROM video_requests
            WHERE status = 'pending' AND available_at <= v_now
              AND (lease_expires_at IS NULL OR lease_expires_at < v_now)
            ORDER BY fair_round, fair_turn, id LIMIT p_limit - cardinality(v_ids)
            FOR UPDATE SKIP LOCKED) AS startable;
        IF v_more IS NOT NULL THEN
            -- The caps are global: one starter decides at a time. The lock comes before the
            -- checks (later statements, so fresh snapshots under READ COMMITTED).
            PERFORM pg_advisory_xact_lock(1986161411);
            v_now := clock_timestamp();
            SELECT (SELECT count(*) FROM video_requests WHERE status = 'generating')
                 + (SELECT count(*) FROM video_requests WHERE status = 'pending' AND lease_expires_at > v_now)
              INTO v_busy;
            v_room := LEAST(cardinality(v_more), p_max_concurrent - v_busy, p_max_starts_per_minute);
            IF v_room > 0 THEN
                -- Grants numbered above (newest - (L - n)) are at most L - n. The newest grant
                -- numbered at or below that is the probe: if there is none, or it is older than
                -- a minute (and so is every grant before it), the window has room for n more.
                SELECT max(id) INTO v_newest FROM veo_start_slots;
                SELECT granted_at INTO v_probe FROM veo_start_slots
                WHERE id <= v_newest - (p_max_starts_per_minute - v_room)
                ORDER BY id DESC LIMIT 1;
                IF v_probe > v_now - interval '1 minute' THEN
                    SELECT count(*) INTO v_in_window FROM veo_start_slots
                    WHERE granted_at > v_now - interval '1 minute';
                    v_room := LEAST(v_room, p_max_starts_per_minute - v_in_window);
                END IF;
            END IF;
            IF v_room > 0 THEN
                v_more := v_more[1:v_room];
                INSERT INTO veo_start_slots (request_id, worker)
                SELECT started, p_worker FROM unnest(v_more) WITH ORDINALITY AS s (started, n) ORDER BY n;
                -- Rounds ascend in the array, so the last one granted is the highest.
                UPDATE fair_share_clock SET round = v_rounds[v_room] WHERE round < v_rounds[v_room];
                v_ids := v_ids || v_more;
            END IF;
        END IF;
    END IF;

    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
        UPDATE video_requests
        SET claimed_by = p_worker, lease_expires_at = v_now + p_lease, attempts = attempts + 1
        WHERE id = ANY (v_ids)
        RETURNING *;
END;
$$;

COMMENT ON FUNCTION claim_video_request IS
    'Up to p_limit pieces of work for a worker: deliver, then resume, then start within the caps, in fair-share order.';
