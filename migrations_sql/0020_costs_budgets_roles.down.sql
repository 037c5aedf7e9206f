ALTER TABLE video_requests DROP COLUMN priority;
ALTER TABLE quota_policies DROP COLUMN priority;
