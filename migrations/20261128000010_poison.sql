-- Poison messages (Exchange's poison message queue): a message whose delivery attempts
-- keep ending without an outcome (the node crashed, was killed, or the attempt never
-- finished) is set aside after a threshold of such attempts, so it cannot take a node
-- down again and again. An administrator resumes or removes it.
alter table messages drop constraint messages_state_check;
alter table messages add constraint messages_state_check check (state in ('queued', 'done', 'poison'));
-- Claims that found the previous claim's lease expired without an outcome recorded.
alter table messages add column crashed_attempts integer not null default 0;
