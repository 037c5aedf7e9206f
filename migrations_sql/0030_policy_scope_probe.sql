-- The policy look-up (resolve_quota_policy, inlined into admission's query and /quota's) as one
-- index probe: a user's rows and a guild's rows are keyed in one index, by the user's id and by
-- the guild's id negated (ids are positive, so the two never meet), and the look-up asks for both
-- keys at once. Before, it was a bitmap OR of two indexes (quota_policies_user_idx and
-- quota_policies_guild_idx) under a bitmap heap scan, whose plan nodes PostgreSQL starts at every
-- admission whatever they read: with role policies in play an admission executes about 20,000
-- instructions fewer (0.6 %, lower in every round counted; docs/BENCHMARKS.md).
-- Same rows chosen, same order, same answer. The two indexes stay: the guild's by its budget's
-- look-up and lock (admission, burst admission), the user's by the admin's search by user id.

CREATE INDEX quota_policies_owner_idx ON quota_policies ((COALESCE(user_id, -guild_id)));

-- The policy a member falls under: user > role > guild > default. Among the member's role
-- policies the most generous wins: the highest quota_limit, then the shortest quota_window
-- (its slots free sooner), then the largest budget (none at all is largest), then the highest
-- max_in_flight (none is highest), then the highest priority, then the oldest policy.
-- A user's rows are keyed by the user's id, a guild's (user_id NULL) by the guild's id negated;
-- an id that is not positive keys nothing (no policy row has one), as it matched nothing before.
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
        WHERE COALESCE(q.user_id, -q.guild_id)
                  = ANY (ARRAY[CASE WHEN p_user_id > 0 THEN p_user_id END,
                               CASE WHEN p_guild_id > 0 THEN -p_guild_id END])
          -- a user's rows: for this guild or for every guild; a guild's: its own, by key
          AND (q.user_id IS NULL OR q.guild_id = p_guild_id OR q.guild_id IS NULL)
          AND (q.role_id IS NULL OR q.role_id = ANY (p_role_ids))
        ORDER BY (q.user_id IS NOT NULL) DESC, (q.guild_id IS NOT NULL) DESC, (q.role_id IS NOT NULL) DESC,
                 q.quota_limit DESC, q.quota_window, q.budget_usd DESC NULLS FIRST,
                 q.max_in_flight DESC NULLS FIRST, q.priority DESC, q.id
        LIMIT 1) AS qp ON true
$$;
