// A client for sseloop's integration tests (tests/it/corpus.rs): the npm
// package @microsoft/fetch-event-source (pinned in package-lock.json), a
// fetch()-based EventSource replacement, on Node's own fetch.
//
//   node fetch-event-source-client.mjs STREAM_URL REPORT_URL [ONCLOSE]
//
// Reports `open`, each message (`message` with type, id, data), `closed`
// when the library calls onclose (the stream ended cleanly), `error` when
// it calls onerror (it then retries by itself, after the stream's
// `retry:`), and `done` when its promise settles (it has stopped for good)
// to REPORT_URL, as report-events.mjs does for the EventSource clients.
// ONCLOSE is what onclose does: `return` (the default: the library then
// stops) or `throw` (what its README advises for reconnecting after a
// clean end: the throw goes to onerror, which retries). Runs until killed.
import { fetchEventSource } from '@microsoft/fetch-event-source';

import { reporter } from './report-events.mjs';

const [url, reportUrl, onClose = 'return'] = process.argv.slice(2);
if (!url || !reportUrl || !['return', 'throw'].includes(onClose)) {
  console.error('usage: node fetch-event-source-client.mjs STREAM_URL REPORT_URL [return|throw]');
  process.exit(2);
}

// The library is written for a browser page: it reads `window.setTimeout`
// and `window.fetch`, and `document` for the page's visibility. Node has
// the first two on globalThis; `document` stands for a page that is always
// visible (with openWhenHidden the library never listens to it, but its
// cleanup still calls removeEventListener).
globalThis.window ??= globalThis;
globalThis.document ??= { hidden: false, addEventListener() {}, removeEventListener() {} };

const report = reporter(reportUrl);
report({ kind: 'loaded', ua: `node ${process.version}` });
let opens = 0;
fetchEventSource(url, {
  openWhenHidden: true,
  async onopen(response) {
    report({ kind: 'open', n: String(++opens), status: String(response.status) });
    // What the library checks when no onopen is given.
    const type = response.headers.get('content-type') ?? '';
    if (!type.startsWith('text/event-stream')) {
      throw new Error(`Expected content-type text/event-stream, got ${type}`);
    }
  },
  onmessage(msg) {
    // The library hands over `event` as sent: empty for an untyped event,
    // which EventSource dispatches as `message`.
    report({ kind: 'message', type: msg.event || 'message', id: msg.id, data: msg.data });
  },
  onclose() {
    report({ kind: 'closed' });
    if (onClose === 'throw') throw new Error('stream ended: reconnect');
  },
  onerror(err) {
    report({ kind: 'error', message: String(err?.message ?? err) });
    // Nothing returned: the library retries after the stream's `retry:`.
  },
}).then(
  () => report({ kind: 'done' }),
  (err) => report({ kind: 'done', error: String(err?.message ?? err) }),
);
