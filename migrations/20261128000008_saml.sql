-- SAML single sign-on for console administrators: the one identity provider, configured
-- from its metadata file, with the group values that map to the console's roles.
create table saml_identity_provider (
    -- One row at most.
    singleton            boolean primary key default true check (singleton),
    metadata_xml         text not null,
    entity_id            text not null,
    sso_url              text not null,
    -- DER certificates pinned from the metadata; a response must be signed by one of them.
    -- Metadata without one is refused (samael would then verify nothing).
    signing_certificates bytea[] not null check (cardinality(signing_certificates) > 0),
    -- The assertion attribute holding the user's groups, and the values that grant a role.
    -- A user with neither value gets no access.
    group_attribute      text not null default 'groups',
    admin_group          text,
    viewer_group         text,
    enabled              boolean not null default false,
    -- Local (break-glass) sign-in with a password stays available unless turned off.
    local_sign_in        boolean not null default true,
    version              bigint not null default 1,
    updated_at           timestamptz not null default now()
);
