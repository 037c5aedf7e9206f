DROP TABLE IF EXISTS journal_quarantine;
ALTER TABLE video_requests DROP CONSTRAINT IF EXISTS video_requests_ended_by_us_never_counts;
-- replay_video_request exactly as 0004 defined it.
CREATE OR REPLACE FUNCTION replay_video_request(p_request jsonb, p_steps jsonb, p_actor text,
                                     OUT request_id bigint, OUT inserted boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_step jsonb;
BEGIN
    SELECT id INTO request_id FROM video_requests WHERE interaction_id = (p_request->>'interaction_id')::bigint;
    IF request_id IS NOT NULL THEN
        inserted := false;
        RETURN;
    END IF;
    PERFORM set_config('veobot.actor', p_actor, true);
    PERFORM set_config('veobot.reason', 'replayed from the bot''s journal (database was unreachable)', true);
    PERFORM set_config('veobot.replay_at', p_request->>'created_at', true);
    INSERT INTO video_requests (
        interaction_id, user_id, guild_id, channel_id, prompt, negative_prompt, duration_seconds,
        aspect_ratio, resolution, generate_audio, person_generation, seed, model, source,
        status, created_at, available_at, counts_toward_quota, error_code, error_message)
    VALUES (
        (p_request->>'interaction_id')::bigint, (p_request->>'user_id')::bigint, (p_request->>'guild_id')::bigint,
        (p_request->>'channel_id')::bigint, p_request->>'prompt', p_request->>'negative_prompt',
        (p_request->>'duration_seconds')::smallint, p_request->>'aspect_ratio', p_request->>'resolution',
        (p_request->>'generate_audio')::boolean, p_request->>'person_generation', (p_request->>'seed')::bigint,
        p_request->>'model', COALESCE(p_request->>'source', 'discord'), p_request->>'status',
        (p_request->>'created_at')::timestamptz, (p_request->>'created_at')::timestamptz,
        p_request->>'status' = 'pending', p_request->>'error_code', p_request->>'error_message')
    RETURNING id INTO request_id;
    inserted := true;

    FOR v_step IN SELECT * FROM jsonb_array_elements(COALESCE(p_steps, '[]'::jsonb)) LOOP
        PERFORM set_config('veobot.replay_at', v_step->>'at', true);
        IF (v_step->>'delivered')::boolean THEN
            UPDATE video_requests SET delivered_at = (v_step->>'at')::timestamptz, delivery_method = v_step->>'method',
                   discord_message_id = (v_step->>'message_id')::bigint, delivery_error = v_step->>'error'
            WHERE id = request_id AND delivered_at IS NULL;
        ELSE
            UPDATE video_requests SET
                status = v_step->>'status',
                operation_name = COALESCE(v_step->>'operation_name', operation_name),
                output_uris = CASE WHEN v_step ? 'output_uris'
                                   THEN ARRAY(SELECT jsonb_array_elements_text(v_step->'output_uris')) ELSE output_uris END,
                public_urls = CASE WHEN v_step ? 'public_urls'
                                   THEN ARRAY(SELECT jsonb_array_elements_text(v_step->'public_urls')) ELSE public_urls END,
                output_size_bytes = COALESCE((v_step->>'output_size_bytes')::bigint, output_size_bytes),
                safety_filtered_count = COALESCE((v_step->>'safety_filtered_count')::integer, safety_filtered_count),
                safety_filtered_reasons = CASE WHEN v_step ? 'safety_filtered_reasons'
                                               THEN ARRAY(SELECT jsonb_array_elements_text(v_step->'safety_filtered_reasons'))
                                               ELSE safety_filtered_reasons END,
                error_code = COALESCE(v_step->>'error_code', error_code),
                error_message = COALESCE(v_step->>'error_message', error_message),
                counts_toward_quota = counts_toward_quota AND NOT COALESCE((v_step->>'refund')::boolean, false)
            WHERE id = request_id;
        END IF;
    END LOOP;
    PERFORM set_config('veobot.replay_at', '', true);
END;
$$;

COMMENT ON FUNCTION replay_video_request IS
    'Idempotent replay of one journaled request with its original timestamps; transitions still validated.';
