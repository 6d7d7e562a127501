-- Poison messages (Exchange's poison message queue): a message whose delivery attempts
-- keep ending without an outcome (the node crashed, was killed, or the attempt never
-- finished) is set aside after a threshold of such attempts, so it cannot take a node
-- down again and again. An administrator resumes or removes it.
alter table messages drop constraint messages_state_check;
alter table messages add constraint messages_state_check check (state in ('queued', 'done', 'poison'));
-- Claims in a row that found the previous claim's lease expired without an outcome
-- recorded (an outcome resets it).
alter table messages add column crashed_attempts integer not null default 0;
-- Removing a message sets its DSNs' dsn_for to null: without this index every removed
-- row (retention deletes them by the thousand) would scan the whole table.
create index messages_dsn_for_idx on messages (dsn_for) where dsn_for is not null;
