-- Admin sign-in throttle, and the audit of data lifecycle operations (retention purge,
-- erasure of one user's data).

-- ---------------------------------------------------------------------------
-- login_failures: recent failed (or still undecided) admin sign-ins. Kept in PostgreSQL so
-- the limit holds across every web process. The user name is stored only as a keyed hash
-- (people type passwords into the user name field); rows older than the window are
-- deleted as new attempts arrive, so the table stays small.
-- ---------------------------------------------------------------------------
CREATE TABLE login_failures (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    username_key  text NOT NULL CONSTRAINT login_failures_username_key_check CHECK (username_key ~ '^[0-9a-f]{64}$'),
    client_ip     text NOT NULL CONSTRAINT login_failures_client_ip_check CHECK (char_length(client_ip) BETWEEN 1 AND 64)
);
CREATE INDEX login_failures_username_idx ON login_failures (username_key, at);
CREATE INDEX login_failures_client_idx ON login_failures (client_ip, at);
CREATE INDEX login_failures_at_idx ON login_failures (at);

COMMENT ON TABLE login_failures IS 'Admin sign-in attempts not (yet) successful, within the throttle window.';

-- Called before the password is checked. Refused (returns how long to wait) when the user
-- name or the client address already has its maximum of failures in the window; otherwise
-- the attempt is recorded as a failure up front (login_succeeded() clears it) and NULL is
-- returned. Recording first, under per-name and per-address locks, means parallel guesses
-- cannot slip past the count.
CREATE FUNCTION login_attempt(p_username_key text, p_client_ip text, p_window interval,
                              p_max_per_user integer, p_max_per_ip integer)
RETURNS interval
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_now        timestamptz;
    v_user_wait  interval;
    v_ip_wait    interval;
BEGIN
    -- Always user name, then address: one order, so two attempts never wait on each other in a cycle.
    PERFORM pg_advisory_xact_lock(1986161412, hashtext(p_username_key));
    PERFORM pg_advisory_xact_lock(1986161413, hashtext(p_client_ip));
    v_now := clock_timestamp();
    DELETE FROM login_failures WHERE at <= v_now - p_window;

    -- The wait: until the oldest failure that keeps the count at its maximum leaves the window.
    SELECT at + p_window - v_now INTO v_user_wait FROM login_failures
    WHERE username_key = p_username_key ORDER BY at DESC OFFSET p_max_per_user - 1 LIMIT 1;
    SELECT at + p_window - v_now INTO v_ip_wait FROM login_failures
    WHERE client_ip = p_client_ip ORDER BY at DESC OFFSET p_max_per_ip - 1 LIMIT 1;
    IF v_user_wait IS NOT NULL OR v_ip_wait IS NOT NULL THEN
        RETURN GREATEST(v_user_wait, v_ip_wait);
    END IF;

    INSERT INTO login_failures (at, username_key, client_ip) VALUES (v_now, p_username_key, p_client_ip);
    RETURN NULL;
END;
$$;

-- A correct password: that user name starts afresh (its failures from every address go).
CREATE FUNCTION login_succeeded(p_username_key text) RETURNS void
LANGUAGE sql VOLATILE AS $$
    DELETE FROM login_failures WHERE username_key = p_username_key;
$$;

-- ---------------------------------------------------------------------------
-- data_lifecycle_audit: one row per purge or erasure. The rows it is about are gone, so
-- their event history cannot hold this; counts only, and for an erasure a keyed hash of
-- the user id (enough to answer "was user X erased, when, by whom" without keeping X).
-- Rows are never deleted; a run fills in its counts once, when it finishes.
-- ---------------------------------------------------------------------------
CREATE TABLE data_lifecycle_audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operation    text NOT NULL
                 CONSTRAINT data_lifecycle_audit_operation_check CHECK (operation IN ('purge_requests', 'erase_user')),
    actor        text NOT NULL CONSTRAINT data_lifecycle_audit_actor_check CHECK (char_length(actor) BETWEEN 1 AND 200),
    subject_key  text CONSTRAINT data_lifecycle_audit_subject_key_check CHECK (subject_key ~ '^[0-9a-f]{64}$'),
    parameters   jsonb NOT NULL DEFAULT '{}',
    counts       jsonb NOT NULL DEFAULT '{}',
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    outcome      text NOT NULL DEFAULT 'running'
                 CONSTRAINT data_lifecycle_audit_outcome_check CHECK (outcome IN ('running', 'done', 'interrupted')),
    CONSTRAINT data_lifecycle_audit_erasure_has_subject CHECK ((operation = 'erase_user') = (subject_key IS NOT NULL)),
    CONSTRAINT data_lifecycle_audit_finished_pair CHECK ((outcome = 'running') = (finished_at IS NULL))
);
CREATE INDEX data_lifecycle_audit_subject_idx ON data_lifecycle_audit (subject_key) WHERE subject_key IS NOT NULL;

COMMENT ON TABLE data_lifecycle_audit IS 'Who purged or erased what, when, with counts; never deleted.';

CREATE FUNCTION data_lifecycle_audit_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.outcome <> 'running'
       OR (NEW.id, NEW.operation, NEW.actor, NEW.subject_key, NEW.parameters, NEW.started_at)
          IS DISTINCT FROM (OLD.id, OLD.operation, OLD.actor, OLD.subject_key, OLD.parameters, OLD.started_at) THEN
        RAISE EXCEPTION 'data_lifecycle_audit keeps its records (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER data_lifecycle_audit_guard
    BEFORE UPDATE OR DELETE ON data_lifecycle_audit
    FOR EACH ROW EXECUTE FUNCTION data_lifecycle_audit_guard();
