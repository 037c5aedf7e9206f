-- Back to the quota index without the cost.
CREATE INDEX video_requests_quota_plain_idx ON video_requests (user_id, created_at DESC) WHERE counts_toward_quota;
DROP INDEX video_requests_quota_idx;
ALTER INDEX video_requests_quota_plain_idx RENAME TO video_requests_quota_idx;
