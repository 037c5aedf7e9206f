-- The durable worker's queue: claiming with a lease, global caps on Veo starts, delivery.
-- PostgreSQL is the only coordinator between workers (FOR UPDATE SKIP LOCKED + leases).

-- One row per Veo operation start granted to a worker, so every worker sees the same
-- starts-per-minute budget (Vertex's project quota is per minute, not per process).
CREATE TABLE veo_start_slots (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  bigint NOT NULL REFERENCES video_requests (id) ON DELETE CASCADE,
    worker      text NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX veo_start_slots_granted_at_idx ON veo_start_slots (granted_at);

COMMENT ON TABLE veo_start_slots IS 'Veo operation starts granted to workers; the shared per-minute start budget.';

-- In-flight rows (the concurrency cap and lease-expiry recovery read these).
CREATE INDEX video_requests_in_flight_idx ON video_requests (status, lease_expires_at)
    WHERE status IN ('pending', 'generating');
-- Finished but not yet delivered (delivery, and recovery after a crash before delivery).
CREATE INDEX video_requests_undelivered_idx ON video_requests (id)
    WHERE delivered_at IS NULL AND status IN ('completed', 'failed', 'timeout', 'cancelled');
DROP INDEX video_requests_unfinished_idx;

-- Claim the next piece of work for p_worker, in this order:
--   1. a finished request not yet delivered (its lease free or expired)  -> deliver
--   2. a generating request whose lease expired (its worker died)        -> resume polling
--   3. the oldest available pending request, if the global caps allow    -> start
-- Returns the claimed row (lease set, attempts + 1), or nothing.
CREATE FUNCTION claim_video_request(
    p_worker text, p_lease interval, p_sources text[], p_max_concurrent integer, p_max_starts_per_minute integer)
RETURNS SETOF video_requests
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_now    timestamptz := clock_timestamp();
    v_id     bigint;
    v_busy   integer;
    v_starts integer;
BEGIN
    SELECT id INTO v_id FROM video_requests
    WHERE delivered_at IS NULL AND status IN ('completed', 'failed', 'timeout', 'cancelled')
      AND source = ANY (p_sources) AND (lease_expires_at IS NULL OR lease_expires_at < v_now)
    ORDER BY id LIMIT 1
    FOR UPDATE SKIP LOCKED;

    IF v_id IS NULL THEN
        SELECT id INTO v_id FROM video_requests
        WHERE status = 'generating' AND (lease_expires_at IS NULL OR lease_expires_at < v_now)
        ORDER BY lease_expires_at NULLS FIRST LIMIT 1
        FOR UPDATE SKIP LOCKED;
    END IF;

    IF v_id IS NULL THEN
        -- The caps are global: one starter decides at a time. The lock comes before the
        -- counts (a later statement, so a fresh snapshot under READ COMMITTED).
        PERFORM pg_advisory_xact_lock(1986161411);
        v_now := clock_timestamp();
        SELECT count(*) INTO v_busy FROM video_requests
        WHERE status = 'generating' OR (status = 'pending' AND lease_expires_at > v_now);
        SELECT count(*) INTO v_starts FROM veo_start_slots WHERE granted_at > v_now - interval '1 minute';
        IF v_busy >= p_max_concurrent OR v_starts >= p_max_starts_per_minute THEN
            RETURN;
        END IF;
        SELECT id INTO v_id FROM video_requests
        WHERE status = 'pending' AND available_at <= v_now
          AND (lease_expires_at IS NULL OR lease_expires_at < v_now)
        ORDER BY available_at, id LIMIT 1
        FOR UPDATE SKIP LOCKED;
        IF v_id IS NULL THEN
            RETURN;
        END IF;
        INSERT INTO veo_start_slots (request_id, worker) VALUES (v_id, p_worker);
    END IF;

    RETURN QUERY
        UPDATE video_requests
        SET claimed_by = p_worker, lease_expires_at = v_now + p_lease, attempts = attempts + 1
        WHERE id = v_id
        RETURNING *;
END;
$$;

-- Hand a request back (shutdown, rate limit): claimable again at p_available_at.
CREATE FUNCTION release_video_request(p_id bigint, p_worker text, p_available_at timestamptz, p_reason text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    UPDATE video_requests
    SET claimed_by = NULL, lease_expires_at = NULL,
        available_at = CASE WHEN status = 'pending' THEN GREATEST(available_at, p_available_at) ELSE available_at END
    WHERE id = p_id AND claimed_by = p_worker;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO video_request_events (request_id, kind, actor, detail)
    VALUES (p_id, 'released', p_worker,
            jsonb_build_object('reason', p_reason, 'available_at', p_available_at));
    RETURN true;
END;
$$;

COMMENT ON FUNCTION claim_video_request IS 'Next work for a worker: deliver, then resume, then start within the caps.';
