-- Browser logins in flight and signed-in web sessions, SQLite dialect. Same conventions as
-- 0001: timestamps are Unix milliseconds, JSON is TEXT kept byte for byte.

-- A login in flight, keyed by the `state` sent to the provider. The callback takes it with
-- `DELETE … WHERE state = ? RETURNING …`, so a state is accepted at most once.
CREATE TABLE login_transactions (
    state           TEXT    NOT NULL PRIMARY KEY,
    browser_binding TEXT    NOT NULL,
    issuer          TEXT    NOT NULL,
    nonce           TEXT    NOT NULL,
    pkce_verifier   TEXT    NOT NULL,
    return_to       TEXT    NOT NULL,
    max_age         INTEGER,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) STRICT;

-- Housekeeping: logins past their deadline.
CREATE INDEX login_transactions_expires ON login_transactions (expires_at);

-- A signed-in browser session, keyed by the SHA-256 (hex) of its cookie: a database read does
-- not yield usable cookies. `issuer` and `subject` repeat the principal's identity (the
-- principal itself is JSON) so back-channel logout can find the sessions of an identity, or
-- of one provider session (`sid`). The refresh token is stored sealed by the server.
CREATE TABLE web_sessions (
    id_hash       TEXT    NOT NULL PRIMARY KEY,
    issuer        TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    sid           TEXT,
    principal     TEXT    NOT NULL,
    id_token      TEXT,
    refresh_token BLOB,
    csrf_token    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL
) STRICT;

-- Logout of an identity (issuer, subject), optionally of one provider session.
CREATE INDEX web_sessions_subject_sid ON web_sessions (issuer, subject, sid);
-- Logout of one provider session (issuer, sid), without a subject.
CREATE INDEX web_sessions_sid ON web_sessions (issuer, sid);
-- Housekeeping: idle sessions.
CREATE INDEX web_sessions_last_seen ON web_sessions (last_seen_at);
