-- The worker's writes as functions: a request's transitions and the record of its delivery.
--
-- The statements are the ones tracking/services.py sent as text until now, unchanged in what
-- they do. Sent as text, each was parsed and planned again on every call (0.12-0.15 ms of
-- planning apiece, three times per request, against a 15-index table); inside a function
-- PL/pgSQL keeps the plan for the session, and the pooled connections last.

-- Move a request to p_status, stamping who and why for the event trigger (transaction-local,
-- as set_config(..., true) always was). The status guard makes a repeat of the same transition
-- match nothing (a no-op, not an error); with p_worker, only while that worker holds the lease.
-- NULL fields keep their current value. Returns the row as the transition left it, or nothing.
CREATE FUNCTION transition_video_request(
    p_id bigint, p_status text, p_actor text, p_reason text, p_refund boolean, p_worker text,
    p_operation_name text, p_output_uris text[], p_public_urls text[], p_output_size_bytes bigint,
    p_safety_filtered_count integer, p_safety_filtered_reasons text[], p_error_code text, p_error_message text)
RETURNS SETOF video_requests
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('veobot.actor', p_actor, true), set_config('veobot.reason', p_reason, true);
    RETURN QUERY
        UPDATE video_requests SET
            status = p_status,
            operation_name = COALESCE(p_operation_name, operation_name),
            output_uris = COALESCE(p_output_uris, output_uris),
            public_urls = COALESCE(p_public_urls, public_urls),
            output_size_bytes = COALESCE(p_output_size_bytes, output_size_bytes),
            safety_filtered_count = COALESCE(p_safety_filtered_count, safety_filtered_count),
            safety_filtered_reasons = COALESCE(p_safety_filtered_reasons, safety_filtered_reasons),
            error_code = COALESCE(p_error_code, error_code),
            error_message = COALESCE(p_error_message, error_message),
            counts_toward_quota = counts_toward_quota AND NOT p_refund
        WHERE id = p_id AND status <> p_status AND (p_worker IS NULL OR claimed_by = p_worker)
        RETURNING *;
END;
$$;

COMMENT ON FUNCTION transition_video_request IS
    'One lifecycle transition (the triggers validate it and write its event); the moved row, or nothing.';

-- Record how the outcome reached the user (or that it could not) and free the lease, once.
-- A moderator may remove the output while the delivery is on its way (after the worker read
-- the row, before the message id is recorded): remove_output then had no message to queue for
-- deletion, so the delivery queues it here, in the same transaction that records the message.
-- Returns the request id, or NULL when it was already delivered or the lease is someone else's.
CREATE FUNCTION record_video_request_delivery(
    p_id bigint, p_worker text, p_method text, p_message_id bigint, p_error text, p_removal_known boolean)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_delivered video_requests;
BEGIN
    UPDATE video_requests SET delivered_at = clock_timestamp(), delivery_method = p_method,
                              discord_message_id = COALESCE(p_message_id, discord_message_id),
                              delivery_error = p_error, claimed_by = NULL, lease_expires_at = NULL
    WHERE id = p_id AND delivered_at IS NULL AND (p_worker IS NULL OR claimed_by = p_worker)
    RETURNING * INTO v_delivered;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_delivered.review_status = 'removed' AND NOT p_removal_known
       AND v_delivered.channel_id IS NOT NULL AND v_delivered.discord_message_id IS NOT NULL THEN
        INSERT INTO discord_actions (request_id, action, channel_id, message_id, requested_by, reason)
        VALUES (v_delivered.id, 'delete_message', v_delivered.channel_id, v_delivered.discord_message_id,
                COALESCE(v_delivered.reviewed_by, 'system'),
                COALESCE(NULLIF(btrim(left(v_delivered.review_note, 1000)), ''), 'output removed during delivery'))
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN v_delivered.id;
END;
$$;

COMMENT ON FUNCTION record_video_request_delivery IS
    'Record a delivery once and free the lease; queue the message''s deletion if the output was removed meanwhile.';
