-- Administrator and API token lifecycle (issue 16).

-- A password someone else chose or saw (the one generated at the first start, printed in
-- the log; one an admin set for another) must be replaced at the next sign-in.
alter table admin_users add column must_change_password boolean not null default false;

-- Tokens: an 'admin' scope (token management; 'write' no longer mints tokens), an
-- expiry (null: never, only when asked for), and the token that created this one
-- through the API, so that revoking a token revokes every token it created.
alter table api_tokens drop constraint api_tokens_scope_check;
alter table api_tokens add constraint api_tokens_scope_check check (scope in ('read', 'write', 'admin'));
alter table api_tokens add column expires_at timestamptz;
alter table api_tokens add column created_by uuid references api_tokens (id);
create index api_tokens_created_by on api_tokens (created_by) where created_by is not null;
