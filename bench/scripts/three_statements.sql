-- (b) The approach admission replaces: count the user's requests in the window, read the
-- oldest (for the reset time), then insert, as three autocommitted statements (three round
-- trips). Nothing serialises two calls for the same user, so concurrent calls can over-admit.
-- Variables (pgbench -D): as floor.sql, plus quota_limit and quota_window.
\set user_id :user_step * random(1, :user_count) + random(:user_offset_min, :user_offset_max)
\set guild_id random(1, 2000)
\set channel_id :guild_id * 100 + random(1, 20)
SELECT count(*) AS used FROM video_requests
WHERE user_id = :user_id AND counts_toward_quota AND created_at > now() - CAST(:quota_window AS interval) \gset
SELECT min(created_at) AS oldest FROM video_requests
WHERE user_id = :user_id AND counts_toward_quota AND created_at > now() - CAST(:quota_window AS interval);
\if :used < :quota_limit
INSERT INTO video_requests (
    interaction_id, user_id, guild_id, channel_id, prompt, duration_seconds, aspect_ratio, resolution,
    generate_audio, person_generation, model, source, status, counts_toward_quota)
VALUES (
    nextval('bench_interaction_ids'), :user_id, :guild_id, :channel_id, :prompt, 8, '16:9', '720p',
    true, 'allow_adult', :model, 'discord', 'pending', true);
\else
INSERT INTO video_requests (
    interaction_id, user_id, guild_id, channel_id, prompt, duration_seconds, aspect_ratio, resolution,
    generate_audio, person_generation, model, source, status, counts_toward_quota, error_code, error_message)
VALUES (
    nextval('bench_interaction_ids'), :user_id, :guild_id, :channel_id, :prompt, 8, '16:9', '720p',
    true, 'allow_adult', :model, 'discord', 'rejected', false, 'quota_exceeded', 'quota exceeded');
\endif
