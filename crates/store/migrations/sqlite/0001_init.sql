-- countersign schema, SQLite dialect. Timestamps are Unix milliseconds (INTEGER) so that values
-- round-trip exactly and hash the same afterwards; JSON is stored as TEXT, byte for byte.

-- One row per request. `version` is the compare-and-set token: every change is
-- `UPDATE ... SET version = version + 1 WHERE id = ? AND version = ?`.
CREATE TABLE requests (
    id                TEXT    NOT NULL PRIMARY KEY,
    gate              TEXT    NOT NULL,
    state             TEXT    NOT NULL
        CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'cancelled', 'revoked')),
    approval          TEXT
        CHECK (approval IN ('quorum', 'auto_approved', 'break_glass')),
    version           INTEGER NOT NULL,
    params            TEXT    NOT NULL,
    reason            TEXT,
    ticket            TEXT,
    requester         TEXT    NOT NULL,
    requester_issuer  TEXT    NOT NULL,
    requester_subject TEXT    NOT NULL,
    duration_secs     INTEGER NOT NULL,
    digest            TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    decided_at        INTEGER,
    updated_at        INTEGER NOT NULL
) STRICT;

-- The expiry sweep: pending requests by deadline.
CREATE INDEX requests_state_expires ON requests (state, expires_at);
-- Listing by gate, and "my requests", both paged by id.
CREATE INDEX requests_gate_id ON requests (gate, id);
CREATE INDEX requests_requester_id ON requests (requester_issuer, requester_subject, id);

-- Decisions, in the order they were made. One per (request, approver identity): the unique
-- constraint is what turns a second decision by the same person into a refused write.
CREATE TABLE decisions (
    request_id       TEXT    NOT NULL REFERENCES requests (id),
    ordinal          INTEGER NOT NULL,
    approver_issuer  TEXT    NOT NULL,
    approver_subject TEXT    NOT NULL,
    approver         TEXT    NOT NULL,
    verdict          TEXT    NOT NULL CHECK (verdict IN ('approve', 'reject')),
    comment          TEXT,
    digest           TEXT    NOT NULL,
    at               INTEGER NOT NULL,
    eligible_rules   TEXT    NOT NULL,
    PRIMARY KEY (request_id, ordinal),
    UNIQUE (request_id, approver_issuer, approver_subject)
) STRICT;

-- The audit chain. `request_id` has no foreign key on purpose: events about refused or unknown
-- requests are kept too.
CREATE TABLE audit_events (
    seq           INTEGER NOT NULL PRIMARY KEY,
    at            INTEGER NOT NULL,
    actor_issuer  TEXT    NOT NULL,
    actor_subject TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    request_id    TEXT,
    digest        TEXT,
    detail        TEXT    NOT NULL,
    prev_hash     TEXT    NOT NULL,
    hash          TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_events_request_seq ON audit_events (request_id, seq);

-- The head of the chain, one row. Appends read and move it inside their write transaction, so
-- two writers never chain onto the same previous event; and because it is kept apart from the
-- events, deleting the newest events does not quietly rewind the chain: the next append still
-- follows the deleted head, and verification reports the gap.
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
) STRICT;

INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
