DROP TABLE IF EXISTS reports;

-- 'reported' events stay (the history is append-only): the old check no longer covers them.
ALTER TABLE video_request_events DROP CONSTRAINT video_request_events_kind_check;
ALTER TABLE video_request_events ADD CONSTRAINT video_request_events_kind_check CHECK (kind IN (
    'created', 'status_changed', 'refunded', 'review_changed', 'delivered', 'released', 'note',
    'user_banned', 'output_removed')) NOT VALID;
