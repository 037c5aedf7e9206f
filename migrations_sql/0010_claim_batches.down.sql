-- Back to 0002's claim (one request per call) and to one events trigger for every write.
DROP TRIGGER video_requests_record_changes ON video_requests;
DROP TRIGGER video_requests_record_events ON video_requests;
CREATE TRIGGER video_requests_record_events
    AFTER INSERT OR UPDATE ON video_requests
    FOR EACH ROW EXECUTE FUNCTION video_requests_record_events();

DROP FUNCTION claim_video_request(text, interval, text[], integer, integer, integer);

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

COMMENT ON FUNCTION claim_video_request IS 'Next work for a worker: deliver, then resume, then start within the caps.';
