-- The admission before the newest admission migration (bench/admission_versions.py installs it).
-- Variables (pgbench -D): as floor.sql, plus quota_limit and quota_window.
\set user_id :user_step * random(1, :user_count) + random(:user_offset_min, :user_offset_max)
\set guild_id random(1, 2000)
\set channel_id :guild_id * 100 + random(1, 20)
SELECT request_id, admitted, duplicate, status, reason_code, reason, used, quota_limit, remaining, reset_at
FROM admit_video_request_previous(
    nextval('bench_interaction_ids'), :user_id, :guild_id, :channel_id, :prompt, NULL, 8::smallint, '16:9',
    '720p', true, 'allow_adult', NULL, :model, 'discord', :quota_limit, :quota_window, 0);
