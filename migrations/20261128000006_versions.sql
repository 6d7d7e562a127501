-- Optimistic concurrency for the REST API: each configuration object carries a version
-- that every change increments. The API's ETag is the object's id and version, and a
-- write with `If-Match` is checked against it inside the write's transaction (RFC 9110
-- §13.1.1), so two provisioning tools cannot overwrite each other silently.
alter table receive_connectors add column version bigint not null default 1;
alter table send_connectors add column version bigint not null default 1;
alter table accepted_domains add column version bigint not null default 1;
-- Send-As grant changes increment their account's version too: the account's API
-- representation lists its grants.
alter table service_accounts add column version bigint not null default 1;

-- The audit log is read newest first and filtered by object.
create index audit_log_object on audit_log (object_type, lower(object_name), id desc);
