// What the browsers' test page and the Node client both send to the
// collector of sseloop's integration tests (tests/it/real/collector.rs):
// each `open`, `error` and event of an EventSource as a form-encoded POST,
// in order (each waits for the one before), with `at` = Date.now() when it
// was dispatched and `seq` counting from 1, so that a lost report shows as
// a gap in `seq` at the collector.

/// A function that reports `fields` to `reportUrl`.
export function reporter(reportUrl) {
  let seq = 0;
  let chain = Promise.resolve();
  return (fields) => {
    fields.at = String(Date.now());
    fields.seq = String(++seq);
    const body = new URLSearchParams(fields);
    chain = chain.then(() =>
      fetch(reportUrl, { method: 'POST', body }).catch((e) => console.error('report failed:', e)),
    );
  };
}

/// Reports the life of `es`: opens, errors, and its `message` and `reset`
/// events plus those of the comma-separated `types`.
export function watch(es, report, types) {
  let opens = 0;
  es.onopen = () => report({ kind: 'open', n: String(++opens) });
  es.onerror = (e) =>
    report({ kind: 'error', state: String(es.readyState), message: String(e?.message ?? '') });
  const onEvent = (e) =>
    report({ kind: 'message', type: e.type, id: e.lastEventId, data: e.data });
  for (const type of new Set(['message', 'reset', ...types.split(',')])) {
    if (type) es.addEventListener(type, onEvent);
  }
}
