// A library client for sseloop's integration tests (tests/it/clients.rs):
// the npm package `eventsource` (v4, the WHATWG EventSource for Node).
//
//   node eventsource-client.mjs STREAM_URL REPORT_URL [TYPES]
//
// Opens an EventSource on STREAM_URL and reports each `open`, `error` and
// event to REPORT_URL as a form-encoded POST, in order (each waits for the
// one before), with `at` = Date.now() taken when the event was dispatched:
// the same reports as the browsers' test page. Runs until killed.
import { EventSource } from 'eventsource';

const [url, reportUrl, types = ''] = process.argv.slice(2);
if (!url || !reportUrl) {
  console.error('usage: node eventsource-client.mjs STREAM_URL REPORT_URL [TYPES]');
  process.exit(2);
}

let seq = 0;
let chain = Promise.resolve();
function report(fields) {
  fields.at = String(Date.now());
  fields.seq = String(++seq);
  const body = new URLSearchParams(fields);
  chain = chain.then(() =>
    fetch(reportUrl, { method: 'POST', body }).catch((e) => console.error('report failed:', e)),
  );
}

report({ kind: 'loaded', ua: `node ${process.version}` });

let opens = 0;
const es = new EventSource(url);
es.onopen = () => report({ kind: 'open', n: String(++opens) });
es.onerror = (e) =>
  report({ kind: 'error', state: String(es.readyState), message: String(e?.message ?? '') });

function onEvent(e) {
  report({ kind: 'message', type: e.type, id: e.lastEventId, data: e.data });
}
es.addEventListener('message', onEvent);
es.addEventListener('reset', onEvent);
for (const type of types.split(',')) {
  if (type) es.addEventListener(type, onEvent);
}
