-- Notifications (Slack, Teams, e-mail, signed webhooks) and the directory of people, PostgreSQL
-- dialect. Same conventions as 0001: times are Unix milliseconds, JSON is text.

-- The notification outbox: one row per (request, channel, reason), written in the
-- transaction of the change; reminders and escalations with the time they are due. Nothing
-- rendered is stored: the worker renders each from the request as it is when it is sent.
-- `thread_key` is the channel, or the channel + '/requester' for the requester's own mail:
-- messages of one request and thread key are sent one at a time, in `due_at` order.
CREATE TABLE notifications (
    id              TEXT    NOT NULL PRIMARY KEY,
    request_id      TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    thread_key      TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    to_requester    BIGINT  NOT NULL,
    due_at          BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'skipped', 'failed')),
    attempts        BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    last_error      TEXT,
    updated_at      BIGINT  NOT NULL
);

-- The claim: pending rows by due time; and, for its NOT EXISTS, a request's rows (a few).
-- Listings walk the primary key (newest first): they are for operators, and every index
-- here is written by every notification the approval path commits.
CREATE INDEX notifications_state_next ON notifications (state, next_attempt_at);
CREATE INDEX notifications_request ON notifications (request_id);

-- What a change announces, as written in its transaction: one row per change holding its
-- notifications (JSON), so the approval path writes one row however many channels hear.
-- The worker fans each out into `notifications` before it claims any; no notification of a
-- request is claimed while one of its batches waits.
CREATE TABLE notice_batches (
    id         TEXT    NOT NULL PRIMARY KEY,
    request_id TEXT    NOT NULL,
    notices    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE INDEX notice_batches_request ON notice_batches (request_id);

-- What each channel has shown of a request: its reference to the first message (a Slack
-- channel and ts, an e-mail Message-ID), and the newest request version it showed.
CREATE TABLE notification_threads (
    request_id    TEXT    NOT NULL,
    thread_key    TEXT    NOT NULL,
    thread        TEXT,
    shown_version BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    PRIMARY KEY (request_id, thread_key)
);

-- People countersign has seen sign in, with their claims as last verified: who could approve,
-- for routing notifications (decisions always use current claims).
CREATE TABLE people (
    issuer    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    principal TEXT    NOT NULL,
    last_seen BIGINT  NOT NULL,
    PRIMARY KEY (issuer, subject)
);

CREATE INDEX people_last_seen ON people (last_seen);
