-- Admission's helpers as PL/pgSQL instead of SQL functions.
--
-- A LANGUAGE sql function that PostgreSQL cannot inline (these return composite rows and are
-- called from PL/pgSQL) is parsed and planned again on every call; PL/pgSQL keeps its
-- statements' plans for the session. Admission calls three of them per request, and re-planning
-- was most of its CPU cost: the same 3,000 admissions run about 1.6x faster with these bodies
-- (docs/BENCHMARKS.md). Same names, signatures, results and semantics as in 0001.

CREATE OR REPLACE FUNCTION resolve_quota_policy(
    p_user_id bigint, p_guild_id bigint,
    p_default_limit integer, p_default_window interval, p_default_max_in_flight integer,
    OUT quota_limit integer, OUT quota_window interval, OUT max_in_flight integer)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_found boolean;
BEGIN
    SELECT qp.quota_limit, qp.quota_window, qp.max_in_flight, true
    INTO quota_limit, quota_window, max_in_flight, v_found
    FROM quota_policies qp
    WHERE (qp.user_id = p_user_id AND (qp.guild_id = p_guild_id OR qp.guild_id IS NULL))
       OR (qp.user_id IS NULL AND qp.guild_id = p_guild_id)
    ORDER BY (qp.user_id IS NOT NULL) DESC, (qp.guild_id IS NOT NULL) DESC
    LIMIT 1;
    IF NOT FOUND THEN
        quota_limit := p_default_limit;
        quota_window := p_default_window;
        max_in_flight := NULLIF(p_default_max_in_flight, 0);
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION quota_usage(p_user_id bigint, p_limit integer, p_window interval, p_now timestamptz,
                                       OUT used integer, OUT reset_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT count(*)::integer, min(recent.created_at) + p_window INTO used, reset_at
    FROM (
        SELECT vr.created_at
        FROM video_requests vr
        WHERE vr.user_id = p_user_id AND vr.counts_toward_quota AND vr.created_at > p_now - p_window
        ORDER BY vr.created_at DESC
        LIMIT GREATEST(p_limit, 1)
    ) AS recent;
END;
$$;

CREATE OR REPLACE FUNCTION active_ban(p_user_id bigint, p_guild_id bigint, p_now timestamptz)
RETURNS user_bans
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ban user_bans;
BEGIN
    SELECT b.* INTO v_ban FROM user_bans b
    WHERE b.user_id = p_user_id AND b.lifted_at IS NULL
      AND (b.expires_at IS NULL OR b.expires_at > p_now)
      AND (b.guild_id IS NULL OR b.guild_id = p_guild_id)
    ORDER BY b.expires_at DESC NULLS FIRST
    LIMIT 1;
    RETURN v_ban;
END;
$$;
