-- Browser logins in flight and signed-in web sessions, PostgreSQL dialect. Same conventions as
-- 0001: timestamps are Unix milliseconds (BIGINT), JSON is TEXT kept byte for byte, keys use
-- the "C" collation.

-- A login in flight, keyed by the `state` sent to the provider. The callback takes it with
-- `DELETE … WHERE state = $1 RETURNING …`: of two concurrent callbacks with the same state,
-- the second waits for the first's row lock, then finds the row gone; a state is accepted at
-- most once.
CREATE TABLE login_transactions (
    state           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    browser_binding TEXT    NOT NULL,
    issuer          TEXT    NOT NULL,
    nonce           TEXT    NOT NULL,
    pkce_verifier   TEXT    NOT NULL,
    return_to       TEXT    NOT NULL,
    max_age         BIGINT,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL
);

-- Housekeeping: logins past their deadline.
CREATE INDEX login_transactions_expires ON login_transactions (expires_at);

-- A signed-in browser session, keyed by the SHA-256 (hex) of its cookie: a database read does
-- not yield usable cookies. `issuer` and `subject` repeat the principal's identity (the
-- principal itself is JSON) so back-channel logout can find the sessions of an identity, or
-- of one provider session (`sid`). The refresh token is stored sealed by the server.
CREATE TABLE web_sessions (
    id_hash       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    issuer        TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    sid           TEXT,
    principal     TEXT    NOT NULL,
    id_token      TEXT,
    refresh_token BYTEA,
    csrf_token    TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL
);

-- Logout of an identity (issuer, subject), optionally of one provider session.
CREATE INDEX web_sessions_subject_sid ON web_sessions (issuer, subject, sid);
-- Logout of one provider session (issuer, sid), without a subject.
CREATE INDEX web_sessions_sid ON web_sessions (issuer, sid);
-- Housekeeping: idle sessions.
CREATE INDEX web_sessions_last_seen ON web_sessions (last_seen_at);
