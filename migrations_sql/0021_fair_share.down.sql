-- Back to 0010's claim (pending rows in arrival order), without the fair-share stamps.
DROP TRIGGER video_requests_take_turn ON video_requests;
DROP FUNCTION video_requests_take_turn();
DROP INDEX video_requests_fair_guild_idx;
DROP INDEX video_requests_fair_queue_idx;
DROP FUNCTION claim_video_request(text, interval, text[], integer, integer, integer);
ALTER TABLE video_requests DROP COLUMN fair_turn, DROP COLUMN fair_round;
DROP TABLE fair_share_clock;

CREATE FUNCTION claim_video_request(
    p_worker text, p_lease interval, p_sources text[], p_max_concurrent integer, p_max_starts_per_minute integer,
    p_limit integer DEFAULT 1)
RETURNS SETOF video_requests
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_now      timestamptz := clock_timestamp();
    v_ids      bigint[];
    v_more     bigint[];
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
        SELECT array_agg(id ORDER BY available_at, id) INTO v_more FROM (
            SELECT id, available_at FROM video_requests
            WHERE status = 'pending' AND available_at <= v_now
              AND (lease_expires_at IS NULL OR lease_expires_at < v_now)
            ORDER BY available_at, id LIMIT p_limit - cardinality(v_ids)
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
    'Up to p_limit pieces of work for a worker: deliver, then resume, then start within the caps.';
