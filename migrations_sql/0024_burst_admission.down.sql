DROP FUNCTION admit_video_requests(jsonb, text, integer, interval, integer, numeric, integer, integer);
DROP FUNCTION fair_queue_head(integer);
