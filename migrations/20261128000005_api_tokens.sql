-- API tokens for /api/v1 (provisioning tools, the live event stream). Only a SHA-256 of
-- the token is kept: the token itself (256 random bits) is shown once when created.
create table api_tokens (
    id           uuid primary key,
    name         text not null,
    scope        text not null check (scope in ('read', 'write')),
    token_sha256 bytea not null unique,
    created_at   timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
create unique index api_tokens_name_key on api_tokens (lower(name)) where revoked_at is null;
