-- Outbound delivery (issue 17): Postfix's TLS levels, trust anchors per send connector,
-- OAuth2 (XOAUTH2) smart hosts, and where MX answers may point.

-- TLS policy: none, opportunistic, encrypt, verify. 'required' always meant a verified
-- certificate (lettre checked chain and name), so it becomes 'verify'.
alter table send_connectors drop constraint send_connectors_tls_policy_check;
update send_connectors set tls_policy = 'verify' where tls_policy = 'required';
alter table send_connectors add constraint send_connectors_tls_policy_check
    check (tls_policy in ('none', 'opportunistic', 'encrypt', 'verify'));

-- Extra CAs (PEM) trusted under 'verify' beside the system store, stored here so every
-- node uses the same; and a pin of the next hop's key ('sha256:' + base64 of the SPKI
-- digest).
alter table send_connectors add column tls_ca_pem text;
alter table send_connectors add column tls_pin text check (tls_pin is null or tls_pin like 'sha256:%');

-- OAuth2 client-credentials grant for XOAUTH2; `username` is then the mailbox signed in
-- as, and `password` is null. The client secret, like the password, is never shown back.
alter table send_connectors add column oauth_token_url text;
alter table send_connectors add column oauth_client_id text;
alter table send_connectors add column oauth_scope text;
alter table send_connectors add column oauth_client_secret text;
alter table send_connectors drop constraint send_connectors_check;
alter table send_connectors add constraint send_connectors_credentials_check check (
    (oauth_token_url is null and (username is null) = (password is null))
    or (oauth_token_url is not null and username is not null and password is null
        and oauth_client_id is not null and oauth_client_secret is not null and oauth_scope is not null)
);

-- MX answers in private, loopback, link-local or this node's own address space are
-- refused unless the connector allows them; which address family is tried first.
alter table send_connectors add column allow_private_destinations boolean not null default false;
alter table send_connectors add column ip_preference text not null default 'any'
    check (ip_preference in ('any', 'ipv4', 'ipv6'));
