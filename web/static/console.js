// The console's few behaviours, in one file served from the binary (the pages carry no
// inline script, so the Content-Security-Policy can forbid it). Each part acts only on
// the page that has its elements.
'use strict';

// Times in the browser's time zone (the server renders RFC 3339 in UTC).
const local = (iso) => new Date(iso).toLocaleString();
document.querySelectorAll('time[datetime]').forEach(t => { t.textContent = local(t.getAttribute('datetime')); });

// Upload: a chosen file's text goes into its textarea (the form itself stays a plain
// urlencoded POST).
document.querySelectorAll('input[type=file][data-fills]').forEach(input => input.addEventListener('change', async () => {
  const file = input.files[0];
  if (file) { document.getElementById(input.dataset.fills).value = await file.text(); }
}));

// Enter in the what-if fields of the connector form tries the settings instead of saving.
const trial = document.getElementById('try-settings');
if (trial) {
  trial.addEventListener('keydown', e => {
    if (e.key === 'Enter' && e.target.tagName === 'INPUT') { e.preventDefault(); document.getElementById('try').click(); }
  });
}

// Message tracking: new events appear as they happen (EventSource on /tracking/live).
const events = document.getElementById('events');
if (events && events.dataset.liveQuery !== undefined) {
  const body = events.querySelector('tbody');
  const state = document.getElementById('live-state');
  // From data attributes, not interpolated into a script: HTML escaping is not JS escaping.
  const query = new URLSearchParams(events.dataset.liveQuery);
  query.set('after', events.dataset.after);
  const source = new EventSource('/tracking/live?' + query.toString());
  source.onopen = () => { state.textContent = 'Live: new events appear below as they happen.'; };
  source.onerror = () => { state.textContent = 'Live: reconnecting…'; };
  source.addEventListener('revoked', () => { state.textContent = 'Live: your session ended; sign in again.'; source.close(); });
  source.addEventListener('tracking', (message) => {
    const e = JSON.parse(message.data);
    const empty = document.getElementById('no-events');
    if (empty) { empty.remove(); }
    const row = document.createElement('tr');
    row.dataset.id = e.id;
    const ip = (e.client_ip || '').replace(/\/(32|128)$/, '');
    const detail = [(e.recipient_status || []).join('; '), e.detail || ''].filter(s => s).join(' · ');
    const cells = [local(e.at), e.event_id, e.sender || '', (e.recipients || []).join(', '), e.connector || '', ip, detail];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      const target = i === 1 && e.session_id ? '/sessions/' + encodeURIComponent(e.session_id)
        : i === 2 && e.queue_id ? '/messages/' + encodeURIComponent(e.queue_id) : null;
      if (target) {
        const link = document.createElement('a');
        link.href = target;
        link.textContent = text;
        td.appendChild(link);
      } else {
        td.textContent = text;
      }
      row.appendChild(td);
    });
    body.appendChild(row);
  });
}
