-- The moderators' dashboard aggregates a day or a week of requests. At millions of rows that
-- is 0.5-5 s of index scans: too slow for every page view, and it would grow with the table.
-- Workers recompute each period every DASHBOARD_REFRESH and keep the result here; the page
-- reads one row and says how old it is (and computes live when no recent snapshot exists).
CREATE TABLE dashboard_snapshots (
    days        smallint PRIMARY KEY CHECK (days BETWEEN 1 AND 90),
    until       timestamptz NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    compute_ms  integer NOT NULL CHECK (compute_ms >= 0),
    data        jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object')
);

COMMENT ON TABLE dashboard_snapshots IS
    'The dashboard for the `days` days before `until`, as computed at computed_at (taking compute_ms).';
