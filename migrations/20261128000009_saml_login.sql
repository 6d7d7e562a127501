-- SAML sign-in: administrators created just in time, keyed by (identity provider, NameID),
-- never by e-mail alone; the AuthnRequests issued, each bound to the browser that asked and
-- usable once; and the assertions already accepted (the replay cache, shared by all nodes).

alter table admin_users
    add column idp_entity_id text,
    add column name_id text,
    add constraint admin_users_federated check ((idp_entity_id is null) = (name_id is null));
create unique index admin_users_federated_key on admin_users (idp_entity_id, name_id) where idp_entity_id is not null;

create table saml_requests (
    id             text primary key,
    -- SHA-256 of the random token in the browser's request cookie.
    browser_sha256 bytea not null,
    -- Where to go after signing in: a relative console path, checked when stored.
    relay_path     text not null,
    expires_at     timestamptz not null
);
create index saml_requests_browser on saml_requests (browser_sha256);

create table saml_assertions_seen (
    id         text primary key,
    expires_at timestamptz not null
);
