-- Rolls back 0007_login_throttle: the sign-in throttle and the lifecycle audit, with their rows.
DROP TABLE IF EXISTS data_lifecycle_audit;
DROP FUNCTION IF EXISTS data_lifecycle_audit_guard();
DROP FUNCTION IF EXISTS login_succeeded(text);
DROP FUNCTION IF EXISTS login_attempt(text, text, interval, integer, integer);
DROP TABLE IF EXISTS login_failures;
