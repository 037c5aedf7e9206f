-- Reports: anyone who sees a delivered video in Discord may report it (its Report button, a
-- reason in a modal); the report is kept here and in the request's history, for moderators to
-- act on. One open report per reporter and request: a second click does not pile up.

ALTER TABLE video_request_events DROP CONSTRAINT video_request_events_kind_check;
ALTER TABLE video_request_events ADD CONSTRAINT video_request_events_kind_check CHECK (kind IN (
    'created', 'status_changed', 'refunded', 'review_changed', 'delivered', 'released', 'note',
    'user_banned', 'output_removed', 'reported')) NOT VALID;
-- Checked apart, under a lock that lets writes go on (NOT VALID took the short one).
ALTER TABLE video_request_events VALIDATE CONSTRAINT video_request_events_kind_check;

CREATE TABLE reports (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id   bigint NOT NULL REFERENCES video_requests (id) ON DELETE CASCADE,
    reporter_id  bigint NOT NULL CONSTRAINT reports_reporter_id_check CHECK (reporter_id > 0),
    guild_id     bigint,
    reason       text NOT NULL CONSTRAINT reports_reason_check CHECK (char_length(btrim(reason)) BETWEEN 1 AND 1000),
    state        text NOT NULL DEFAULT 'open'
                 CONSTRAINT reports_state_check CHECK (state IN ('open', 'dismissed', 'actioned')),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved_at  timestamptz,
    resolved_by  text,
    CONSTRAINT reports_resolution_pair CHECK ((state = 'open') = (resolved_at IS NULL))
);

CREATE UNIQUE INDEX reports_one_open_per_reporter ON reports (request_id, reporter_id) WHERE state = 'open';
CREATE INDEX reports_open_idx ON reports (created_at) WHERE state = 'open';
CREATE INDEX reports_request_idx ON reports (request_id);

COMMENT ON TABLE reports IS 'Reports of delivered videos by Discord users, for moderators to act on.';
COMMENT ON COLUMN reports.state IS 'open until a moderator dismisses it or acts on it (resolved_at, resolved_by).';
