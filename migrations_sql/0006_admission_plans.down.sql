-- Restores the LANGUAGE sql helpers of 0001_core_schema.
-- The most specific policy for (user, guild), or the defaults passed by the caller.
CREATE OR REPLACE FUNCTION resolve_quota_policy(
    p_user_id bigint, p_guild_id bigint,
    p_default_limit integer, p_default_window interval, p_default_max_in_flight integer,
    OUT quota_limit integer, OUT quota_window interval, OUT max_in_flight integer)
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(p.quota_limit, p_default_limit),
           COALESCE(p.quota_window, p_default_window),
           CASE WHEN p.id IS NULL THEN NULLIF(p_default_max_in_flight, 0) ELSE p.max_in_flight END
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT qp.id, qp.quota_limit, qp.quota_window, qp.max_in_flight
        FROM quota_policies qp
        WHERE (qp.user_id = p_user_id AND (qp.guild_id = p_guild_id OR qp.guild_id IS NULL))
           OR (qp.user_id IS NULL AND qp.guild_id = p_guild_id)
        ORDER BY (qp.user_id IS NOT NULL) DESC, (qp.guild_id IS NOT NULL) DESC
        LIMIT 1
    ) AS p ON true
$$;

-- How many counted requests the user has in the window, reading at most p_limit index
-- entries; reset_at is when the oldest of those leaves the window (a slot frees).
CREATE OR REPLACE FUNCTION quota_usage(p_user_id bigint, p_limit integer, p_window interval, p_now timestamptz,
                            OUT used integer, OUT reset_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer, min(recent.created_at) + p_window
    FROM (
        SELECT vr.created_at
        FROM video_requests vr
        WHERE vr.user_id = p_user_id AND vr.counts_toward_quota AND vr.created_at > p_now - p_window
        ORDER BY vr.created_at DESC
        LIMIT GREATEST(p_limit, 1)
    ) AS recent
$$;

-- The ban in force for a user in a guild (NULL guild = DM: only global bans apply).
CREATE OR REPLACE FUNCTION active_ban(p_user_id bigint, p_guild_id bigint, p_now timestamptz)
RETURNS user_bans
LANGUAGE sql STABLE AS $$
    SELECT b.* FROM user_bans b
    WHERE b.user_id = p_user_id AND b.lifted_at IS NULL
      AND (b.expires_at IS NULL OR b.expires_at > p_now)
      AND (b.guild_id IS NULL OR b.guild_id = p_guild_id)
    ORDER BY b.expires_at DESC NULLS FIRST
    LIMIT 1
$$;
