-- Grants, signing keys and the webhook outbox, PostgreSQL dialect. Same conventions as 0001:
-- timestamps are Unix milliseconds (BIGINT), JSON is TEXT kept byte for byte, ids use the
-- "C" collation so they order by their bytes.

-- Issued grant tokens. `single_use_request` is the request id for a single-use grant and NULL
-- otherwise; its unique constraint is what makes a second single-use grant for the same
-- request a refused write (NULLs never collide), whatever the number of concurrent redeemers.
CREATE TABLE grants (
    jti                TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    request_id         TEXT COLLATE "C" NOT NULL REFERENCES requests (id),
    kid                TEXT    NOT NULL,
    issued_at          BIGINT  NOT NULL,
    expires_at         BIGINT  NOT NULL,
    revoked_at         BIGINT,
    single_use_request TEXT COLLATE "C" CONSTRAINT grants_single_use_request_key UNIQUE,
    CHECK (single_use_request IS NULL OR single_use_request = request_id)
);

CREATE INDEX grants_request ON grants (request_id);

-- Signing keys, oldest first by (created_at, seq). The private key is stored sealed (nonce and
-- AES-256-GCM ciphertext, sealed by the tokens adapter), never in the clear.
CREATE TABLE signing_keys (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kid            TEXT COLLATE "C" NOT NULL UNIQUE,
    alg            TEXT    NOT NULL,
    public_jwk     TEXT    NOT NULL,
    sealed_private BYTEA   NOT NULL,
    created_at     BIGINT  NOT NULL,
    signs_from     BIGINT  NOT NULL,
    publish_until  BIGINT
);

-- The webhook outbox: one row per message, written in the transaction of the change it
-- announces, then taken by the delivery workers (`FOR UPDATE SKIP LOCKED`, so replicas never
-- take the same row). Ids are `msg_` + ULID (time-ordered). No secret is stored: the webhook's
-- URL and secret are read from the configuration by (gate, webhook index) at delivery time;
-- `url` is only for listings.
CREATE TABLE deliveries (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    gate            TEXT    NOT NULL,
    webhook         BIGINT  NOT NULL,
    url             TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    request_id      TEXT COLLATE "C" NOT NULL,
    payload         TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    last_error      TEXT,
    updated_at      BIGINT  NOT NULL
);

-- The workers' claim: due pending rows by time.
CREATE INDEX deliveries_state_next ON deliveries (state, next_attempt_at);
-- Listing by state, newest first by id.
CREATE INDEX deliveries_state_id ON deliveries (state, id);
