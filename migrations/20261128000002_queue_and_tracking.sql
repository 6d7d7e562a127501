-- The durable queue. A message and all its recipients are inserted in one
-- transaction; the SMTP 250 is sent only after it commits.

create table messages (
    id               uuid primary key,            -- the queue id, UUIDv7 (time-ordered)
    -- Envelope sender; '' is the null reverse-path <> (bounces), which never gets a DSN.
    sender           text not null,
    size             bigint not null,
    message_id       text,                        -- the Message-ID header, for tracking search
    subject          text,
    -- 'queued': has recipients still to try; 'done': every recipient has a final outcome.
    state            text not null default 'queued' check (state in ('queued', 'done')),
    received_at      timestamptz not null default now(),
    next_attempt_at  timestamptz not null default now(),
    -- Lease: a node that claimed the message owns it until lease_expires_at. A node that
    -- dies mid-delivery loses its lease and another node retries.
    lease_owner      uuid,
    lease_expires_at timestamptz,
    attempts         integer not null default 0,
    expires_at       timestamptz not null,
    -- How it came in (copied from the session so tracking needs no join to config).
    receive_connector text not null,
    client_ip        inet,
    client_helo      text,
    auth_as          text not null default 'anonymous' check (auth_as in ('anonymous', 'authenticated', 'internal')),
    account          text,
    session_id       uuid,
    config_generation bigint,
    -- For a DSN: the message it reports on.
    dsn_for          uuid references messages (id) on delete set null
) with (fillfactor = 70); -- room for HOT updates: claims and outcomes rewrite the row

-- The bytes, apart from the queue state: claiming or finishing a message rewrites its
-- small `messages` row and never copies the body.
create table message_bodies (
    message_id uuid primary key references messages (id) on delete cascade,
    -- The message as received, with our Received header and a Message-ID if it had none.
    -- Stored unstuffed, CRLF line endings.
    body       bytea not null
);
-- lz4 instead of pglz: several times faster, and it gives up quickly on bodies that do
-- not compress (base64 attachments), so the hot path spends little CPU on it.
alter table message_bodies alter column body set compression lz4;
create index messages_due_idx on messages (next_attempt_at) where state = 'queued';

create table recipients (
    message_id  uuid not null references messages (id) on delete cascade,
    idx         integer not null,
    address     text not null,
    -- 'pending' (never tried), 'deferred' (retry later), 'delivered', 'failed'.
    status      text not null default 'pending' check (status in ('pending', 'deferred', 'delivered', 'failed')),
    attempts    integer not null default 0,
    -- Last reply of the remote server or our own reason, e.g. '250 2.0.0 Ok'.
    last_reply  text,
    -- Send connector / host that took it, for tracking.
    route       text,
    updated_at  timestamptz not null default now(),
    primary key (message_id, idx)
) with (fillfactor = 70);

-- The message tracking log (Get-MessageTrackingLog).
create table tracking_events (
    id            bigint generated always as identity primary key,
    at            timestamptz not null default now(),
    -- RECEIVE, SEND, DEFER, FAIL, DSN, DROP, THROTTLE, REJECT (Postern extension).
    event_id      text not null,
    -- SMTP, QUEUE, DNS, ADMIN.
    source        text not null,
    connector     text,
    client_ip     inet,
    client_hostname text,
    server_ip     inet,
    server_hostname text,
    sender        text,
    header_from   text,
    recipients    text[] not null default '{}',
    -- One reply line per recipient, same order as recipients.
    recipient_status text[] not null default '{}',
    message_id    text,
    queue_id      uuid,
    subject       text,
    size          bigint,
    recipient_count integer,
    auth_as       text,
    account       text,
    auth_mechanism text,
    tls           text,
    config_generation bigint,
    session_id    uuid,
    -- A DSN's original queue id, or other context.
    reference     text,
    detail        text
);
-- Events are appended in time order: a BRIN index finds a time range for a fraction of
-- a btree's insert cost.
create index tracking_events_at_idx on tracking_events using brin (at);
create index tracking_events_queue_id_idx on tracking_events (queue_id);
create index tracking_events_sender_idx on tracking_events (lower(sender));
create index tracking_events_recipients_idx on tracking_events using gin (recipients);
create index tracking_events_message_id_idx on tracking_events (message_id);
