-- The token of each queued reply, so that whichever bot process delivers the outcome (another
-- one, or this one after a restart) edits the original reply while its token lives, instead of
-- posting a second message in the channel.
--
-- A token lets its holder edit that one reply for 15 minutes: a secret while it lives. Nothing
-- shows it (no admin page, no export, no log); rows go when used, and expired ones are swept
-- by each new insert (keep_reply_token), so the table holds about 15 minutes of replies.

CREATE TABLE reply_tokens (
    interaction_id  bigint PRIMARY KEY CONSTRAINT reply_tokens_interaction_id_check CHECK (interaction_id > 0),
    application_id  bigint NOT NULL CONSTRAINT reply_tokens_application_id_check CHECK (application_id > 0),
    token           text NOT NULL CONSTRAINT reply_tokens_token_check CHECK (char_length(token) BETWEEN 1 AND 1000),
    size_limit      integer NOT NULL CONSTRAINT reply_tokens_size_limit_check CHECK (size_limit > 0),
    expires_at      timestamptz NOT NULL
);

CREATE INDEX reply_tokens_expires_idx ON reply_tokens (expires_at);

COMMENT ON TABLE reply_tokens IS 'Interaction tokens of replies awaiting their outcome (secret while they live; never shown).';
COMMENT ON COLUMN reply_tokens.size_limit IS 'The largest file Discord accepts in that reply (the interaction''s attachment_size_limit).';
