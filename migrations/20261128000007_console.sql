-- The console's administrators and their sign-in sessions.

create table admin_users (
    id            uuid primary key,
    name          text not null,
    -- argon2id PHC string.
    password_hash text not null,
    -- 'admin' edits; 'viewer' reads tracking, queue and logs only.
    role          text not null check (role in ('admin', 'viewer')),
    enabled       boolean not null default true,
    created_at    timestamptz not null default now(),
    last_sign_in_at timestamptz
);
create unique index admin_users_name_key on admin_users (lower(name));

-- A signed-in browser. The cookie holds a random token; only its SHA-256 is stored, so a
-- leaked table does not sign anyone in. Sessions end when idle past their expiry.
create table admin_sessions (
    token_sha256 bytea primary key,
    user_id      uuid not null references admin_users (id) on delete cascade,
    -- Sent back in every form (synchronizer token against cross-site request forgery).
    csrf_token   text not null,
    created_at   timestamptz not null default now(),
    last_seen_at timestamptz not null default now()
);
create index admin_sessions_user on admin_sessions (user_id);
