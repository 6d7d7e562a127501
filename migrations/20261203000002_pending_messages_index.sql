-- The queue gauges (depth, oldest, poison) are read once a second by every node; with
-- days of delivered messages kept for the queue view, reading them must not scan those.
create index messages_pending_idx on messages (received_at) where state <> 'done';
