-- countersign schema, PostgreSQL dialect. Timestamps are Unix milliseconds (BIGINT) so that
-- values round-trip exactly and hash the same afterwards; JSON is stored as TEXT (not JSONB),
-- byte for byte, so an audit event's detail re-hashes to the same value.
-- Ids use the "C" collation: request ids are ordered by their bytes (ULIDs sort by time that
-- way), whatever the database's locale.

-- One row per request. `version` is the compare-and-set token: every change is
-- `UPDATE ... SET version = version + 1 WHERE id = $1 AND version = $2`.
CREATE TABLE requests (
    id                TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    gate              TEXT    NOT NULL,
    state             TEXT    NOT NULL
        CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'cancelled', 'revoked')),
    approval          TEXT
        CHECK (approval IN ('quorum', 'auto_approved', 'break_glass')),
    version           BIGINT  NOT NULL,
    params            TEXT    NOT NULL,
    reason            TEXT,
    ticket            TEXT,
    requester         TEXT    NOT NULL,
    requester_issuer  TEXT    NOT NULL,
    requester_subject TEXT    NOT NULL,
    duration_secs     BIGINT  NOT NULL,
    digest            TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    decided_at        BIGINT,
    updated_at        BIGINT  NOT NULL
);

-- The expiry sweep: pending requests by deadline.
CREATE INDEX requests_state_expires ON requests (state, expires_at);
-- Listing by gate, and "my requests", both paged by id.
CREATE INDEX requests_gate_id ON requests (gate, id);
CREATE INDEX requests_requester_id ON requests (requester_issuer, requester_subject, id);

-- Decisions, in the order they were made. One per (request, approver identity): the unique
-- constraint is what turns a second decision by the same person into a refused write.
CREATE TABLE decisions (
    request_id       TEXT COLLATE "C" NOT NULL REFERENCES requests (id),
    ordinal          BIGINT  NOT NULL,
    approver_issuer  TEXT    NOT NULL,
    approver_subject TEXT    NOT NULL,
    approver         TEXT    NOT NULL,
    verdict          TEXT    NOT NULL CHECK (verdict IN ('approve', 'reject')),
    comment          TEXT,
    digest           TEXT    NOT NULL,
    at               BIGINT  NOT NULL,
    eligible_rules   TEXT    NOT NULL,
    PRIMARY KEY (request_id, ordinal),
    UNIQUE (request_id, approver_issuer, approver_subject)
);

-- The audit chain. `request_id` has no foreign key on purpose: events about refused or unknown
-- requests are kept too.
CREATE TABLE audit_events (
    seq           BIGINT  NOT NULL PRIMARY KEY,
    at            BIGINT  NOT NULL,
    actor_issuer  TEXT    NOT NULL,
    actor_subject TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    request_id    TEXT COLLATE "C",
    digest        TEXT,
    detail        TEXT    NOT NULL,
    prev_hash     TEXT    NOT NULL,
    hash          TEXT    NOT NULL
);

CREATE INDEX audit_events_request_seq ON audit_events (request_id, seq);

-- The head of the chain, one row, locked FOR UPDATE by every append for the rest of its
-- transaction, so two transactions never chain onto the same previous event. Kept apart from
-- the events so that deleting the newest events does not quietly rewind the chain: the next
-- append still follows the deleted head, and verification reports the gap.
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);

INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
