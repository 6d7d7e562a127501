-- Configuration: everything an administrator edits. Every table here fires a NOTIFY
-- on change (see the trigger at the end), so a running node reloads its snapshot
-- whether the change came from the console, the API, the CLI or hand-written SQL.

-- A named inbound policy, as Exchange's receive connector.
create table receive_connectors (
    id                   uuid primary key,
    name                 text not null,
    enabled              boolean not null default true,
    -- "ip:port" strings; 0.0.0.0 / [::] mean every local address on that port.
    bindings             text[] not null check (cardinality(bindings) > 0),
    -- Clients whose address falls in one of these ranges may use the connector.
    remote_ip_ranges     cidr[] not null check (cardinality(remote_ip_ranges) > 0),
    -- 'anonymous' and/or 'authenticated' (Exchange's AnonymousUsers / ExchangeUsers).
    permission_groups    text[] not null default '{}'
        check (permission_groups <@ array['anonymous', 'authenticated']),
    -- SASL mechanisms offered to service accounts: 'plain', 'login'.
    auth_mechanisms      text[] not null default '{}'
        check (auth_mechanisms <@ array['plain', 'login']),
    -- Basic auth only after TLS (Exchange's BasicAuthRequireTLS).
    auth_requires_tls    boolean not null default true,
    tls_mode             text not null default 'starttls_offered'
        check (tls_mode in ('none', 'starttls_offered', 'starttls_required', 'implicit')),
    -- PEM chain and key for STARTTLS / implicit TLS; null = the node's default certificate.
    tls_certificate_pem  text,
    tls_key_pem          text,
    -- Ms-Exch-SMTP-Accept-Any-Recipient for anonymous clients: relay to external domains.
    accept_any_recipient boolean not null default false,
    max_message_size     bigint not null default 36700160 check (max_message_size between 1024 and 536870912),
    max_recipients       integer not null default 200 check (max_recipients between 1 and 100000),
    max_connections      integer not null default 5000 check (max_connections between 1 and 1000000),
    max_connections_per_source integer not null default 20 check (max_connections_per_source between 1 and 1000000),
    -- Limit on messages accepted per minute from one source address (0 = unlimited).
    max_messages_per_minute_per_source integer not null default 0 check (max_messages_per_minute_per_source >= 0),
    -- Idle time allowed between two client inputs.
    connection_timeout_secs integer not null default 300 check (connection_timeout_secs between 1 and 86400),
    -- Text after "220 <fqdn> " in the greeting; null = "Postern ESMTP ready".
    banner               text,
    -- Name the connector announces in its greeting, EHLO and Received headers.
    fqdn                 text not null,
    protocol_logging     text not null default 'none' check (protocol_logging in ('none', 'verbose')),
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now()
);
create unique index receive_connectors_name_key on receive_connectors (lower(name));

-- Domains the relay treats as internal.
create table accepted_domains (
    id          uuid primary key,
    domain      text not null check (domain = lower(domain)),
    domain_type text not null default 'authoritative' check (domain_type in ('authoritative', 'internal_relay')),
    created_at  timestamptz not null default now()
);
create unique index accepted_domains_domain_key on accepted_domains (domain);

-- Outbound routes.
create table send_connectors (
    id             uuid primary key,
    name           text not null,
    enabled        boolean not null default true,
    -- Domain patterns: 'example.com', '*.example.com' or '*' for everything else.
    address_spaces text[] not null check (cardinality(address_spaces) > 0),
    -- "host:port" entries tried in order; empty = deliver by DNS MX.
    smart_hosts    text[] not null default '{}',
    -- Port used for smart hosts without one and for MX delivery.
    port           integer not null default 25 check (port between 1 and 65535),
    tls_policy     text not null default 'opportunistic' check (tls_policy in ('none', 'opportunistic', 'required')),
    username       text,
    -- Smart-host password. Only ever written, never shown back by the console or API.
    password       text,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    check ((username is null) = (password is null))
);
create unique index send_connectors_name_key on send_connectors (lower(name));

-- Logins for authenticated relay.
create table service_accounts (
    id                   uuid primary key,
    name                 text not null,
    address              text not null,
    -- argon2id PHC string; never the password.
    password_hash        text not null,
    enabled              boolean not null default true,
    -- Null = any source address the connector admits.
    remote_ip_ranges     cidr[],
    max_messages_per_minute integer check (max_messages_per_minute > 0),
    max_messages_per_day    integer check (max_messages_per_day > 0),
    last_used_at         timestamptz,
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now()
);
create unique index service_accounts_name_key on service_accounts (lower(name));

-- Account X may send as address Y ('smb1@example.com') or a whole domain ('*@example.com').
create table send_as_grants (
    account_id uuid not null references service_accounts (id) on delete cascade,
    sender     text not null check (sender = lower(sender)),
    created_at timestamptz not null default now(),
    primary key (account_id, sender)
);

-- The generation of the configuration: bumped in the same transaction as any change,
-- so a snapshot read together with it says exactly which rules it holds.
create table config_state (
    singleton  boolean primary key default true check (singleton),
    generation bigint not null,
    changed_at timestamptz not null default now()
);
insert into config_state (generation) values (1);

create function postern_config_changed() returns trigger language plpgsql as $$
declare
    next_generation bigint;
begin
    update config_state set generation = generation + 1, changed_at = now()
        returning generation into next_generation;
    perform pg_notify('postern_config', next_generation::text);
    return null;
end;
$$;

create trigger receive_connectors_changed after insert or update or delete or truncate on receive_connectors
    for each statement execute function postern_config_changed();
create trigger accepted_domains_changed after insert or update or delete or truncate on accepted_domains
    for each statement execute function postern_config_changed();
create trigger send_connectors_changed after insert or update or delete or truncate on send_connectors
    for each statement execute function postern_config_changed();
create trigger service_accounts_changed after insert or update of name, address, password_hash, enabled,
    remote_ip_ranges, max_messages_per_minute, max_messages_per_day or delete or truncate on service_accounts
    for each statement execute function postern_config_changed();
create trigger send_as_grants_changed after insert or update or delete or truncate on send_as_grants
    for each statement execute function postern_config_changed();

-- Who changed what, when: one row per configuration change.
create table audit_log (
    id         bigint generated always as identity primary key,
    at         timestamptz not null default now(),
    -- 'cli:<os user>', 'api:<token name>', 'console:<admin>'.
    actor      text not null,
    action     text not null,
    object_type text not null,
    object_name text not null,
    before     jsonb,
    after      jsonb
);
create index audit_log_at_idx on audit_log (at);
