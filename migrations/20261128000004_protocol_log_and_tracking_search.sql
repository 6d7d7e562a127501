-- The SMTP protocol log (Exchange's SmtpReceive log with ProtocolLoggingLevel Verbose):
-- one row per line sent or received by a session of a connector with verbose logging.
-- AUTH secrets and message bodies are never written here.
create table protocol_log (
    id              bigint generated always as identity primary key,
    at              timestamptz not null,
    session_id      uuid not null,
    -- Order within the session (0 = connect).
    seq             integer not null,
    connector       text not null,
    local_endpoint  text not null,
    remote_endpoint text not null,
    -- '+' connect, '-' disconnect, '>' sent, '<' received, '*' information.
    event           text not null check (event in ('+', '-', '>', '<', '*')),
    data            text not null default '',
    context         text not null default ''
);
create index protocol_log_session_idx on protocol_log (session_id, seq);
create index protocol_log_at_idx on protocol_log using brin (at);

-- Get-MessageTrackingLog filters beyond the first ones: client IP, account, session (the
-- link from an event to its protocol log transcript).
create index tracking_events_client_ip_idx on tracking_events (client_ip);
create index tracking_events_account_idx on tracking_events (lower(account)) where account is not null;
create index tracking_events_session_idx on tracking_events (session_id) where session_id is not null;
