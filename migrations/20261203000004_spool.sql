-- Large messages are spooled while DATA is still arriving (issue 17): the body after the
-- header section goes here in chunks of 256 KiB, so a session never holds a
-- whole large message in memory. The commit that queues the message assembles its body
-- from the chunks (in Postgres) and deletes them, in the same transaction. Chunks of a
-- session that never committed (refused, disconnected, node killed) are deleted by the
-- hourly retention once they are an hour old.
create table spool_chunks (
    spool      uuid not null,
    seq        integer not null,
    data       bytea not null,
    created_at timestamptz not null default now(),
    primary key (spool, seq)
);
create index spool_chunks_created_at on spool_chunks (created_at);
