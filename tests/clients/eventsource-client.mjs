// A library client for sseloop's integration tests (tests/it/clients.rs,
// tests/it/corpus.rs): the npm package `eventsource` (v4, the WHATWG
// EventSource for Node).
//
//   node eventsource-client.mjs STREAM_URL REPORT_URL [TYPES]
//
// Opens an EventSource on STREAM_URL and reports each `open`, `error` and
// event to REPORT_URL as a form-encoded POST, in order (each waits for the
// one before), with `at` = Date.now() taken when the event was dispatched:
// the same reports as the browsers' test page. Runs until killed.
import { EventSource } from 'eventsource';

import { reporter, watch } from './report-events.mjs';

const [url, reportUrl, types = ''] = process.argv.slice(2);
if (!url || !reportUrl) {
  console.error('usage: node eventsource-client.mjs STREAM_URL REPORT_URL [TYPES]');
  process.exit(2);
}

const report = reporter(reportUrl);
report({ kind: 'loaded', ua: `node ${process.version}` });
watch(new EventSource(url), report, types);
