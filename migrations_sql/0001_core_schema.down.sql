-- Rolls back 0001_core_schema: drops every object it created (and all request data).
DROP FUNCTION IF EXISTS admit_video_request(bigint, bigint, bigint, bigint, text, text, smallint, text, text,
                                            boolean, text, bigint, text, text, integer, interval, integer);
DROP TYPE IF EXISTS admission_result;
DROP FUNCTION IF EXISTS active_ban(bigint, bigint, timestamptz);
DROP FUNCTION IF EXISTS quota_usage(bigint, integer, interval, timestamptz);
DROP FUNCTION IF EXISTS resolve_quota_policy(bigint, bigint, integer, interval, integer);
DROP TABLE IF EXISTS video_request_events;
DROP TABLE IF EXISTS video_requests;
DROP TABLE IF EXISTS quota_policies;
DROP TABLE IF EXISTS user_bans;
DROP FUNCTION IF EXISTS video_requests_record_events();
DROP FUNCTION IF EXISTS veobot_reason();
DROP FUNCTION IF EXISTS veobot_actor();
DROP FUNCTION IF EXISTS video_requests_guard_insert();
DROP FUNCTION IF EXISTS video_requests_guard_update();
DROP FUNCTION IF EXISTS video_request_transition_allowed(text, text);
DROP FUNCTION IF EXISTS video_request_events_append_only();
