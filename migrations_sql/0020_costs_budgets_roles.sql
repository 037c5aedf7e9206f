-- Cost control: priorities carried from the policy to the request (the worker's start order
-- reads them), and, below, prices, costs, budgets and policies by Discord role.

ALTER TABLE quota_policies
    ADD COLUMN priority smallint NOT NULL DEFAULT 0
        CONSTRAINT quota_policies_priority_check CHECK (priority BETWEEN -100 AND 100);
COMMENT ON COLUMN quota_policies.priority IS
    'Higher starts sooner among waiting requests; 0 is everyone''s default.';

-- Copied at admission from the policy that admitted the request, so the worker's claim never
-- has to resolve policies (the member's roles are known only at admission).
ALTER TABLE video_requests
    ADD COLUMN priority smallint NOT NULL DEFAULT 0
        CONSTRAINT video_requests_priority_check CHECK (priority BETWEEN -100 AND 100);
