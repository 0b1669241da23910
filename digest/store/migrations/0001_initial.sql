-- digest's PostgreSQL schema, version 1 (digest/store/postgres.py).
-- Records keep their indexed keys in columns and every other field in `data`, the JSON
-- form of their dataclass (digest/store/fields.py Codec): a field added to a model with a
-- default lands here with no schema change.

CREATE TABLE subscribers (
    email_lc text PRIMARY KEY,          -- the address in lower case: addresses are case-blind
    email    text NOT NULL,
    id       text NOT NULL UNIQUE,      -- opaque, never reused
    status   text NOT NULL,
    data     jsonb NOT NULL             -- every Subscriber field by name, defaults omitted
);
CREATE INDEX subscribers_status ON subscribers (status, email_lc);

CREATE TABLE seen (
    id         text PRIMARY KEY,        -- arXiv id without version
    first_seen date NOT NULL,
    kept_on    date,                    -- the day the details are filed under (retention)
    paper      jsonb                    -- the details while kept
);
CREATE INDEX seen_first_seen ON seen (first_seen);
CREATE INDEX seen_kept_on ON seen (kept_on);

CREATE TABLE digests (
    day       date NOT NULL,
    email     text NOT NULL,
    digest_id text NOT NULL,
    state     text NOT NULL,
    paper_ids text[] NOT NULL,
    at        timestamptz NOT NULL,
    data      jsonb NOT NULL,           -- the other DeliveryRecord fields by name
    PRIMARY KEY (day, email)
);
CREATE INDEX digests_email_day ON digests (email, day);
CREATE INDEX digests_digest_id ON digests (digest_id);
CREATE INDEX digests_deferred ON digests (day) WHERE state = 'deferred';

CREATE TABLE runs (
    seq  bigserial PRIMARY KEY,
    day  date NOT NULL,
    data jsonb NOT NULL                 -- RunReport's fields by name
);
CREATE INDEX runs_day ON runs (day, seq);

CREATE TABLE mail (
    id          text PRIMARY KEY,
    message     jsonb NOT NULL,
    enqueued    timestamptz NOT NULL,
    due         timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    state       text NOT NULL,          -- queued | claimed | failed
    detail      text NOT NULL DEFAULT '',
    lease_until timestamptz
);
CREATE INDEX mail_due ON mail (due, enqueued, id) WHERE state <> 'failed';

CREATE TABLE limit_hits (
    key     text NOT NULL,
    at      double precision NOT NULL,  -- epoch seconds
    expires double precision NOT NULL
);
CREATE INDEX limit_hits_key ON limit_hits (key, at);

CREATE TABLE nonces (
    nonce   text PRIMARY KEY,
    expires timestamptz NOT NULL
);

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE secret (
    one   integer PRIMARY KEY CHECK (one = 1),
    value text NOT NULL
);

-- Many workers on one day: the day's gathered papers (computed once, under an advisory
-- lock) and the leased claims on its subscribers.
CREATE TABLE day_gathered (
    day  date PRIMARY KEY,
    at   timestamptz NOT NULL,
    data jsonb NOT NULL
);

CREATE TABLE claims (
    day         date NOT NULL,
    email_lc    text NOT NULL,
    worker      text NOT NULL,
    lease_until timestamptz NOT NULL,
    PRIMARY KEY (day, email_lc)
);
CREATE INDEX claims_worker ON claims (worker);
