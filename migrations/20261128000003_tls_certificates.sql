-- Self-signed certificates Postern generates for TLS connectors that name no certificate
-- of their own, one per FQDN. Kept in the database so every node (and every restart)
-- presents the same certificate: a client that pinned it keeps working.
create table generated_certificates (
    fqdn            text primary key check (fqdn = lower(fqdn)),
    certificate_pem text not null,
    key_pem         text not null,
    created_at      timestamptz not null default now()
);

