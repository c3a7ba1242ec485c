// Drives sseloop's wire inspector page (GET /, src/inspector.html) in headless
// Chromium through the npm package `playwright-core`, for the integration test
// tests/it/inspector.rs and for scripts/screenshot.sh.
//
//   node inspector-check.mjs BASE_URL [--topics T] [--type TYPE] [--data TEXT]
//        [--screenshot PATH] [--settle-ms MS] [--timeout-ms MS]
//        [--total-timeout-ms MS] [--chromium PATH]
//
// It opens BASE_URL/?topics=T&autoconnect=1 at 1280x800, waits until the page
// is subscribed, publishes one event through the page's own form, and waits
// until that event shows in the parsed view, in the raw view and as the
// Last-Event-ID. It prints one JSON object with what it saw (the first key is
// "report": "inspector-check") and exits 0; judging it is the caller's job.
// A step that does not finish within --timeout-ms prints the report so far
// with `failed` naming the step, and exits 1; so does the whole check when it
// takes longer than --total-timeout-ms (default: --settle-ms plus 8 times
// --timeout-ms), should one of Playwright's own steps hang.
//
// --settle-ms lets the page run that long after subscribing, before publishing
// (for the screenshot: the demo's events fill both views first).
import { chromium } from 'playwright-core';

const USAGE =
  'usage: node inspector-check.mjs BASE_URL [--topics T] [--type TYPE] [--data TEXT] ' +
  '[--screenshot PATH] [--settle-ms MS] [--timeout-ms MS] [--total-timeout-ms MS] ' +
  '[--chromium PATH]';

function parseArgs(argv) {
  const opts = {
    base: null,
    topics: 't1',
    type: 'inspected',
    data: 'first line: héllo wörld\nsecond line: ✓ 日本語 🚀',
    screenshot: null,
    settleMs: 0,
    timeoutMs: 15000,
    totalTimeoutMs: null,
    chromium: '/usr/bin/chromium',
  };
  const names = {
    '--topics': 'topics', '--type': 'type', '--data': 'data', '--screenshot': 'screenshot',
    '--settle-ms': 'settleMs', '--timeout-ms': 'timeoutMs',
    '--total-timeout-ms': 'totalTimeoutMs', '--chromium': 'chromium',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg in names) {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      opts[names[arg]] = argv[++i];
    } else if (arg.startsWith('--') || opts.base !== null) {
      usage(`unexpected argument ${arg}`);
    } else {
      opts.base = arg.replace(/\/+$/, '');
    }
  }
  if (!opts.base) usage('BASE_URL is missing');
  // Eight steps' worth: launch, load, the waits on the page, and slack.
  opts.totalTimeoutMs ??= Number(opts.settleMs) + 8 * Number(opts.timeoutMs);
  for (const key of ['settleMs', 'timeoutMs', 'totalTimeoutMs']) {
    opts[key] = Number(opts[key]);
    if (!Number.isInteger(opts[key]) || opts[key] < 0) usage(`bad --${key} value`);
  }
  return opts;
}

function usage(why) {
  console.error(`inspector-check: ${why}\n${USAGE}`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const report = {
  report: 'inspector-check',
  url: `${opts.base}/?topics=${encodeURIComponent(opts.topics)}&autoconnect=1`,
  failed: null,
  state: null,
  stateText: null,
  publishStatus: null,
  publishText: null,
  publishedId: null,
  publishedTopic: null,
  publishedType: null,
  publishedData: null,
  eventId: null,
  eventType: null,
  eventIdText: null,
  eventTypeText: null,
  eventData: null,
  rawText: null,
  rawShown: null,
  lastEventId: null,
  eventCount: null,
  rawCount: null,
  consoleErrors: [],
  pageErrors: [],
  screenshot: null,
};

let step = 'launch chromium';
let browser = null;

let finished = false;

function finish(code) {
  // The last-resort timer can fire while a finish is closing the browser, and
  // the steps fail once it is closed: the first finish is the only report.
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(report) + '\n');
  const close = browser ? browser.close().catch(() => {}) : Promise.resolve();
  // Closing must not hang the exit; the caller kills the group anyway.
  const bound = new Promise((resolve) => setTimeout(resolve, 5000).unref());
  Promise.race([close, bound]).then(() => process.exit(code));
}

// Every wait below has its own timeout; this is the last resort should one of
// Playwright's own steps (launch, close) hang.
setTimeout(() => {
  if (finished) return;
  report.failed = `${step}: the whole check took longer than ${opts.totalTimeoutMs} ms`;
  finish(1);
}, opts.totalTimeoutMs).unref();

try {
  browser = await chromium.launch({
    executablePath: opts.chromium,
    headless: true,
    timeout: opts.timeoutMs,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(opts.timeoutMs);
  page.on('console', (msg) => {
    if (msg.type() === 'error') {
      const where = msg.location();
      report.consoleErrors.push(`${msg.text()} (${where.url}:${where.lineNumber})`);
    }
  });
  page.on('pageerror', (err) => report.pageErrors.push(String(err && err.stack ? err.stack : err)));

  step = 'load the page';
  await page.goto(report.url, { waitUntil: 'load' });

  // Both subscriptions must be in place before publishing, or the event would
  // reach only one view: the EventSource has fired `open`, and the raw fetch
  // has received the stream's first bytes (sent with the response head).
  step = 'wait for #state[data-state=open]';
  await page.waitForSelector('#state[data-state=open]');
  step = 'wait for the first #raw .chunk';
  await page.waitForSelector('#raw .chunk', { state: 'attached' });
  report.state = await page.getAttribute('#state', 'data-state');
  report.stateText = await page.textContent('#state');

  if (opts.settleMs > 0) {
    step = 'settle';
    await page.waitForTimeout(opts.settleMs);
  }

  step = 'fill and submit the publish form';
  report.publishedTopic = opts.topics.split(/[\s,]+/).filter(Boolean)[0] ?? '';
  report.publishedType = opts.type;
  report.publishedData = opts.data;
  await page.fill('#pub-topic', report.publishedTopic);
  await page.fill('#pub-type', opts.type);
  await page.fill('#pub-data', opts.data);
  await page.click('#publish');

  step = 'wait for #pub-result to leave pending';
  await page.waitForSelector('#pub-result[data-status=ok], #pub-result[data-status=error]');
  report.publishStatus = await page.getAttribute('#pub-result', 'data-status');
  report.publishText = await page.textContent('#pub-result');
  report.publishedId = await page.getAttribute('#pub-result', 'data-id');
  if (report.publishStatus !== 'ok' || !report.publishedId) {
    throw new Error(`publish answered ${report.publishStatus}: ${report.publishText}`);
  }
  const id = report.publishedId;

  step = `wait for #events .event[data-id="${id}"]`;
  const event = await page.waitForSelector(`#events .event[data-id=${JSON.stringify(id)}]`, {
    state: 'attached',
  });
  Object.assign(
    report,
    await event.evaluate((node) => ({
      eventId: node.dataset.id,
      eventType: node.dataset.type,
      eventIdText: node.querySelector('.id')?.textContent ?? null,
      eventTypeText: node.querySelector('.type')?.textContent ?? null,
      eventData: node.querySelector('.data')?.textContent ?? null,
    })),
  );

  // An event may in principle arrive over several reads, so the raw view is
  // read as a whole: the chunks' wire text joined oldest first.
  step = `wait for "id: ${id}" and the data in #raw`;
  const raw = await page.waitForFunction(
    ({ id, data }) => {
      const chunks = [...document.querySelectorAll('#raw .chunk')].reverse();
      const text = chunks.map((c) => c.dataset.text ?? '').join('');
      const start = text.indexOf(`id: ${id}\n`);
      if (start < 0) return null;
      const end = text.indexOf('\n\n', start);
      if (end < 0) return null;
      const block = text.slice(start, end + 2);
      if (!data.split('\n').every((line) => block.includes(`data: ${line}\n`))) return null;
      // What the raw view shows for those bytes: the rendered text (with its
      // visible line-end markers) of the chunks that hold the event.
      let offset = 0;
      const shown = [];
      for (const c of chunks) {
        const len = (c.dataset.text ?? '').length;
        if (offset < start + block.length && offset + len > start) {
          shown.push(c.querySelector('.wire')?.innerText ?? '');
        }
        offset += len;
      }
      return { rawText: block, rawShown: shown.join('\n') };
    },
    { id, data: opts.data },
  );
  Object.assign(report, await raw.jsonValue());

  step = 'read the counters';
  report.lastEventId = await page.textContent('#last-event-id');
  report.eventCount = Number(await page.textContent('#event-count'));
  report.rawCount = Number(await page.textContent('#raw-count'));
  report.state = await page.getAttribute('#state', 'data-state');
  report.stateText = await page.textContent('#state');

  if (opts.screenshot) {
    step = `screenshot to ${opts.screenshot}`;
    // Animations off, so the shot does not catch the state dot mid-pulse.
    await page.screenshot({ path: opts.screenshot, animations: 'disabled' });
    report.screenshot = opts.screenshot;
  }
  step = 'done';
  finish(0);
} catch (err) {
  report.failed = `${step}: ${err && err.message ? err.message.split('\n')[0] : err}`;
  finish(1);
}
