-- Grants, signing keys and the webhook outbox, SQLite dialect. Same conventions as 0001:
-- timestamps are Unix milliseconds, JSON is TEXT kept byte for byte.

-- Issued grant tokens. `single_use_request` is the request id for a single-use grant and NULL
-- otherwise; its unique constraint is what makes a second single-use grant for the same
-- request a refused write (NULLs never collide), whatever the number of concurrent redeemers.
CREATE TABLE grants (
    jti                TEXT    NOT NULL PRIMARY KEY,
    request_id         TEXT    NOT NULL REFERENCES requests (id),
    kid                TEXT    NOT NULL,
    issued_at          INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    revoked_at         INTEGER,
    single_use_request TEXT    UNIQUE,
    CHECK (single_use_request IS NULL OR single_use_request = request_id)
) STRICT;

CREATE INDEX grants_request ON grants (request_id);

-- Signing keys, oldest first by (created_at, seq). The private key is stored sealed (nonce and
-- AES-256-GCM ciphertext, sealed by the tokens adapter), never in the clear.
CREATE TABLE signing_keys (
    seq            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kid            TEXT    NOT NULL UNIQUE,
    alg            TEXT    NOT NULL,
    public_jwk     TEXT    NOT NULL,
    sealed_private BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    signs_from     INTEGER NOT NULL,
    publish_until  INTEGER
) STRICT;

-- The webhook outbox: one row per message, written in the transaction of the change it
-- announces, then taken by the delivery worker. Ids are `msg_` + ULID (time-ordered).
-- No secret is stored: the webhook's URL and secret are read from the configuration by
-- (gate, webhook index) at delivery time; `url` is only for listings.
CREATE TABLE deliveries (
    id              TEXT    NOT NULL PRIMARY KEY,
    gate            TEXT    NOT NULL,
    webhook         INTEGER NOT NULL,
    url             TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    request_id      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL
) STRICT;

-- The worker's claim: due pending rows by time.
CREATE INDEX deliveries_state_next ON deliveries (state, next_attempt_at);
-- Listing by state, newest first by id.
CREATE INDEX deliveries_state_id ON deliveries (state, id);
