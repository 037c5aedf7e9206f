DROP FUNCTION IF EXISTS release_video_request(bigint, text, timestamptz, text);
DROP FUNCTION IF EXISTS claim_video_request(text, interval, text[], integer, integer);
DROP INDEX IF EXISTS video_requests_undelivered_idx;
DROP INDEX IF EXISTS video_requests_in_flight_idx;
CREATE INDEX video_requests_unfinished_idx ON video_requests (lease_expires_at)
    WHERE status IN ('pending', 'generating') OR (delivered_at IS NULL AND status NOT IN ('rejected', 'cancelled'));
DROP TABLE IF EXISTS veo_start_slots;
