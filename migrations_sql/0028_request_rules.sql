-- video_requests' 37 CHECK constraints become one, which calls video_request_broken_rule.
--
-- Why: PostgreSQL (15 and 16 alike) reads every CHECK expression of a table back from its stored
-- text and prepares it again in each statement that writes the table (ExecConstraints). It
-- evaluates them cheaply, but that re-reading cost 1.24 M of the ~3.7 M instructions of an
-- admission, and as much in every worker write to a request: start, completion, delivery, lease
-- (docs/BENCHMARKS.md, "Where the budgets' instructions go"). One constraint whose expression is a
-- single call is read back in a few thousand instructions; the rules themselves are a PL/pgSQL
-- expression that is prepared once per session. Measured: 0.82 M instructions less per admission.
-- The price is per row (the whole row formed, the function called): a statement writing many
-- rows pays ~20 µs more for each (docs/BENCHMARKS.md, "video_requests' rules as one constraint").
--
-- The rules are exactly the 37 constraints they replace, with the same names: a row that breaks
-- one is refused with SQLSTATE 23514 (check_violation), the broken rule's name as the
-- constraint, and PostgreSQL's own wording, so clients and tests see what they saw before. Each
-- rule passes when it is NULL, as a CHECK does. The first broken rule, in name order, is the one
-- reported.
--
-- NOT VALID, as 0013's rule was: the existing rows were all written under these same rules, and
-- checking a large table again would hold its lock for the whole deploy. Every new write is
-- checked. `ALTER TABLE video_requests VALIDATE CONSTRAINT video_requests_rules` checks the
-- old rows too, under a lock that lets writes go on, if an operator wants it.

CREATE FUNCTION video_request_broken_rule(r video_requests) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN CASE
        WHEN NOT (r.aspect_ratio IN ('16:9', '9:16')) THEN 'video_requests_aspect_ratio_check'
        WHEN NOT (r.attempts >= 0) THEN 'video_requests_attempts_check'
        WHEN NOT (r.channel_id > 0) THEN 'video_requests_channel_id_check'
        WHEN NOT (r.status <> 'completed' OR cardinality(r.output_uris) > 0) THEN 'video_requests_completed_has_output'
        WHEN NOT (r.cost_estimated_usd >= 0) THEN 'video_requests_cost_estimated_usd_check'
        WHEN NOT (r.cost_final_usd >= 0) THEN 'video_requests_cost_final_usd_check'
        WHEN NOT (r.delivery_method IN ('interaction', 'channel', 'cli', 'undeliverable'))
            THEN 'video_requests_delivery_method_check'
        WHEN NOT ((r.delivered_at IS NULL) = (r.delivery_method IS NULL)) THEN 'video_requests_delivery_pair'
        WHEN NOT (r.derived_as IN ('reroll', 'edit', 'extend')) THEN 'video_requests_derived_as_check'
        WHEN NOT (r.duration_seconds IN (4, 6, 8)) THEN 'video_requests_duration_check'
        WHEN r.counts_toward_quota  -- its CHECK was NOT (this): broken when this is true
             AND (r.status IN ('timeout', 'cancelled')
                  OR (r.status = 'failed' AND r.error_code IS DISTINCT FROM 'content_filtered'))
            THEN 'video_requests_ended_by_us_never_counts'
        WHEN NOT (r.error_code ~ '^[a-z][a-z0-9_]{0,62}$') THEN 'video_requests_error_code_check'
        WHEN NOT (char_length(r.error_message) <= 4000) THEN 'video_requests_error_message_check'
        WHEN NOT (r.status NOT IN ('failed', 'timeout') OR r.error_code IS NOT NULL) THEN 'video_requests_failed_has_reason'
        WHEN NOT (r.status <> 'generating' OR r.operation_name IS NOT NULL) THEN 'video_requests_generating_has_operation'
        WHEN NOT (r.guild_id > 0) THEN 'video_requests_guild_id_check'
        WHEN NOT (char_length(r.image_uri) BETWEEN 1 AND 2000) THEN 'video_requests_image_uri_check'
        WHEN NOT (r.last_frame_uri IS NULL OR r.image_uri IS NOT NULL) THEN 'video_requests_last_frame_needs_image'
        WHEN NOT (char_length(r.last_frame_uri) BETWEEN 1 AND 2000) THEN 'video_requests_last_frame_uri_check'
        WHEN NOT ((r.claimed_by IS NULL) = (r.lease_expires_at IS NULL)) THEN 'video_requests_lease_pair'
        WHEN NOT (char_length(r.model) BETWEEN 1 AND 200) THEN 'video_requests_model_check'
        WHEN NOT (char_length(r.negative_prompt) <= 4000) THEN 'video_requests_negative_prompt_check'
        WHEN NOT (r.output_size_bytes >= 0) THEN 'video_requests_output_size_check'
        WHEN NOT (r.parent_id IS NULL OR r.derived_as IS NOT NULL) THEN 'video_requests_parent_has_kind'
        WHEN NOT (r.person_generation IN ('dont_allow', 'allow_adult', 'allow_all'))
            THEN 'video_requests_person_generation_check'
        WHEN NOT (r.priority BETWEEN -100 AND 100) THEN 'video_requests_priority_check'
        WHEN NOT (char_length(r.prompt) BETWEEN 1 AND 4000) THEN 'video_requests_prompt_check'
        WHEN NOT (r.status <> 'rejected' OR r.error_code IS NOT NULL) THEN 'video_requests_rejected_has_reason'
        WHEN NOT (r.status <> 'rejected' OR NOT r.counts_toward_quota) THEN 'video_requests_rejected_never_counts'
        WHEN NOT (r.resolution IN ('720p', '1080p')) THEN 'video_requests_resolution_check'
        WHEN NOT (r.review_status IN ('unreviewed', 'approved', 'flagged', 'removed')) THEN 'video_requests_review_status_check'
        WHEN NOT (r.safety_filtered_count >= 0) THEN 'video_requests_safety_filtered_count_check'
        WHEN NOT (r.seed BETWEEN 0 AND 4294967295) THEN 'video_requests_seed_check'
        WHEN NOT (r.source IN ('discord', 'cli')) THEN 'video_requests_source_check'
        WHEN NOT (r.status IN ('pending', 'generating', 'completed', 'failed', 'timeout', 'cancelled', 'rejected'))
            THEN 'video_requests_status_check'
        WHEN NOT (r.user_id > 0) THEN 'video_requests_user_id_check'
        WHEN NOT (char_length(r.video_input_uri) BETWEEN 1 AND 2000) THEN 'video_requests_video_input_uri_check'
    END;
END;
$$;
COMMENT ON FUNCTION video_request_broken_rule(video_requests) IS
    'The name of the first rule of video_requests that a row breaks, NULL when it keeps them all (0028).';

-- The constraint: raises for a broken rule, under that rule's name.
CREATE FUNCTION video_request_keeps_rules(r video_requests) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_broken text := video_request_broken_rule(r);
BEGIN
    IF v_broken IS NOT NULL THEN
        RAISE EXCEPTION 'new row for relation "video_requests" violates check constraint "%"', v_broken
            USING ERRCODE = 'check_violation', CONSTRAINT = v_broken, TABLE = 'video_requests';
    END IF;
    RETURN true;
END;
$$;

ALTER TABLE video_requests
    DROP CONSTRAINT video_requests_aspect_ratio_check,
    DROP CONSTRAINT video_requests_attempts_check,
    DROP CONSTRAINT video_requests_channel_id_check,
    DROP CONSTRAINT video_requests_completed_has_output,
    DROP CONSTRAINT video_requests_cost_estimated_usd_check,
    DROP CONSTRAINT video_requests_cost_final_usd_check,
    DROP CONSTRAINT video_requests_delivery_method_check,
    DROP CONSTRAINT video_requests_delivery_pair,
    DROP CONSTRAINT video_requests_derived_as_check,
    DROP CONSTRAINT video_requests_duration_check,
    DROP CONSTRAINT video_requests_ended_by_us_never_counts,
    DROP CONSTRAINT video_requests_error_code_check,
    DROP CONSTRAINT video_requests_error_message_check,
    DROP CONSTRAINT video_requests_failed_has_reason,
    DROP CONSTRAINT video_requests_generating_has_operation,
    DROP CONSTRAINT video_requests_guild_id_check,
    DROP CONSTRAINT video_requests_image_uri_check,
    DROP CONSTRAINT video_requests_last_frame_needs_image,
    DROP CONSTRAINT video_requests_last_frame_uri_check,
    DROP CONSTRAINT video_requests_lease_pair,
    DROP CONSTRAINT video_requests_model_check,
    DROP CONSTRAINT video_requests_negative_prompt_check,
    DROP CONSTRAINT video_requests_output_size_check,
    DROP CONSTRAINT video_requests_parent_has_kind,
    DROP CONSTRAINT video_requests_person_generation_check,
    DROP CONSTRAINT video_requests_priority_check,
    DROP CONSTRAINT video_requests_prompt_check,
    DROP CONSTRAINT video_requests_rejected_has_reason,
    DROP CONSTRAINT video_requests_rejected_never_counts,
    DROP CONSTRAINT video_requests_resolution_check,
    DROP CONSTRAINT video_requests_review_status_check,
    DROP CONSTRAINT video_requests_safety_filtered_count_check,
    DROP CONSTRAINT video_requests_seed_check,
    DROP CONSTRAINT video_requests_source_check,
    DROP CONSTRAINT video_requests_status_check,
    DROP CONSTRAINT video_requests_user_id_check,
    DROP CONSTRAINT video_requests_video_input_uri_check,
    ADD CONSTRAINT video_requests_rules CHECK (video_request_keeps_rules(video_requests.*)) NOT VALID;
