-- Back to the policy look-up as a bitmap OR of the user's and the guild's indexes (0020).
CREATE OR REPLACE FUNCTION resolve_quota_policy(
    p_user_id bigint, p_guild_id bigint, p_role_ids bigint[],
    p_default_limit integer, p_default_window interval, p_default_max_in_flight integer)
RETURNS TABLE (quota_limit integer, quota_window interval, max_in_flight integer,
               budget_usd numeric, budget_window interval, priority smallint, policy_id bigint)
LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT COALESCE(qp.quota_limit, p_default_limit), COALESCE(qp.quota_window, p_default_window),
           CASE WHEN qp.id IS NULL THEN NULLIF(p_default_max_in_flight, 0) ELSE qp.max_in_flight END,
           qp.budget_usd, qp.budget_window, COALESCE(qp.priority, 0::smallint), qp.id
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT q.* FROM quota_policies q
        WHERE (q.user_id = p_user_id AND (q.guild_id = p_guild_id OR q.guild_id IS NULL))
           OR (q.user_id IS NULL AND q.guild_id = p_guild_id
               AND (q.role_id IS NULL OR q.role_id = ANY (p_role_ids)))
        ORDER BY (q.user_id IS NOT NULL) DESC, (q.guild_id IS NOT NULL) DESC, (q.role_id IS NOT NULL) DESC,
                 q.quota_limit DESC, q.quota_window, q.budget_usd DESC NULLS FIRST,
                 q.max_in_flight DESC NULLS FIRST, q.priority DESC, q.id
        LIMIT 1) AS qp ON true
$$;

DROP INDEX quota_policies_owner_idx;
