-- (a) The floor: one autocommitted INSERT of the row an admitted request writes, no checks.
-- Variables (pgbench -D): user_step, user_count, user_offset_min, user_offset_max, prompt, model.
\set user_id :user_step * random(1, :user_count) + random(:user_offset_min, :user_offset_max)
\set guild_id random(1, 2000)
\set channel_id :guild_id * 100 + random(1, 20)
INSERT INTO video_requests (
    interaction_id, user_id, guild_id, channel_id, prompt, duration_seconds, aspect_ratio, resolution,
    generate_audio, person_generation, model, source, status, counts_toward_quota)
VALUES (
    nextval('bench_interaction_ids'), :user_id, :guild_id, :channel_id, :prompt, 8, '16:9', '720p',
    true, 'allow_adult', :model, 'discord', 'pending', true);
