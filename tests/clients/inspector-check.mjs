// Drives sseloop's wire inspector page (GET /, src/inspector.html) in headless
// Chromium through the npm package `playwright-core`, for the integration test
// tests/it/inspector.rs and for scripts/screenshot.sh.
//
//   node inspector-check.mjs BASE_URL [--topics T] [--type TYPE] [--data TEXT]
//        [--screenshot PATH] [--settle-ms MS] [--timeout-ms MS]
//        [--total-timeout-ms MS] [--chromium PATH] [--full]
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
//
// --full goes on, on a server with no other publisher (the caller's), and
// reports each step for the caller to judge:
//   own      whether the form's event is marked as the user's own in both views,
//            and whether an event published from outside (by this script, with
//            Node's fetch) is not;
//   pause    Pause, an event published from the form while paused (it must be
//            held: counted, not shown), Resume (then shown, still marked own);
//   queries  the page opened with ?topic=q1&topic=q2 and with ?topics=q1,q2:
//            the topics it subscribed to and the events of both that it showed;
//   layout   at 1400x1000, 800x600 and 390x844: each card of the left column
//            scrolled into view by the page (its box, whether an ancestor clips
//            it), whether the left column scrolls inside itself, and the page's
//            width against the window's.
import { ending, launchChromium } from './chromium-check.mjs';

const USAGE =
  'usage: node inspector-check.mjs BASE_URL [--topics T] [--type TYPE] [--data TEXT] ' +
  '[--screenshot PATH] [--settle-ms MS] [--timeout-ms MS] [--total-timeout-ms MS] ' +
  '[--chromium PATH] [--full]';

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
    full: false,
  };
  const names = {
    '--topics': 'topics', '--type': 'type', '--data': 'data', '--screenshot': 'screenshot',
    '--settle-ms': 'settleMs', '--timeout-ms': 'timeoutMs',
    '--total-timeout-ms': 'totalTimeoutMs', '--chromium': 'chromium',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--full') {
      opts.full = true;
    } else if (arg in names) {
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
  own: null,
  pause: null,
  queries: null,
  layout: null,
};

let step = 'launch chromium';
let browser = null;
const { finish, failAfter } = ending(report, () => browser);

// Every wait below has its own timeout.
failAfter(opts.totalTimeoutMs, () => `${step}: the whole check took longer than ${opts.totalTimeoutMs} ms`);

try {
  browser = await launchChromium(opts.chromium, opts.timeoutMs);
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
    // Animations off, so the shot does not catch the state dot mid-pulse; the
    // whole page, so the left column's foot is in the picture too.
    await page.screenshot({ path: opts.screenshot, animations: 'disabled', fullPage: true });
    report.screenshot = opts.screenshot;
  }
  if (opts.full) await fullChecks(page, id);
  step = 'done';
  finish(0);
} catch (err) {
  report.failed = `${step}: ${err && err.message ? err.message.split('\n')[0] : err}`;
  finish(1);
}

// ---- --full ------------------------------------------------------------------

// Publishes from outside the page, as another program would.
async function publishOutside(topic, type, data) {
  const q = new URLSearchParams({ topic, event: type });
  const res = await fetch(`${opts.base}/publish?${q}`, { method: 'POST', body: data });
  const text = (await res.text()).trim();
  if (!res.ok) throw new Error(`outside publish answered ${res.status}: ${text}`);
  return text;
}

function eventSel(id) {
  return `#events .event[data-id=${JSON.stringify(id)}]`;
}

// Whether the raw view (shown entries only) holds "id: ID", and how many of
// its lines are marked own.
function rawState(page, id) {
  return page.evaluate((id) => {
    const chunks = [...document.querySelectorAll('#raw .chunk')];
    const holding = chunks.filter((c) => (c.dataset.text ?? '').includes(`id: ${id}\n`));
    return {
      shown: holding.length > 0,
      ownLines: holding.reduce((n, c) => n + c.querySelectorAll('.line.own').length, 0),
      ownChunk: holding.some((c) => c.classList.contains('own')),
    };
  }, id);
}

function eventState(page, id) {
  return page.evaluate((sel) => {
    const node = document.querySelector(sel);
    return node
      ? { shown: true, own: node.dataset.own === '1' && node.classList.contains('own'),
          tag: node.querySelector('.own-tag')?.textContent ?? null }
      : { shown: false, own: false, tag: null };
  }, eventSel(id));
}

async function publishWithForm(page, data) {
  await page.fill('#pub-data', data);
  // The previous result's id must not be taken for this one's.
  await page.evaluate(() => { delete document.querySelector('#pub-result').dataset.status; });
  await page.click('#publish');
  await page.waitForSelector('#pub-result[data-status=ok], #pub-result[data-status=error]');
  const status = await page.getAttribute('#pub-result', 'data-status');
  if (status !== 'ok') throw new Error(`publish answered: ${await page.textContent('#pub-result')}`);
  return page.getAttribute('#pub-result', 'data-id');
}

async function fullChecks(page, formId) {
  const topic = report.publishedTopic;

  step = 'own: the form event and an outside event';
  report.own = { formId, form: null, formRaw: null, outsideId: null, outside: null, outsideRaw: null };
  await page.waitForFunction(
    (id) => [...document.querySelectorAll('#raw .chunk.own')].some((c) => (c.dataset.text ?? '').includes(`id: ${id}\n`)),
    formId,
  );
  report.own.form = await eventState(page, formId);
  report.own.formRaw = await rawState(page, formId);
  const outsideId = await publishOutside(topic, opts.type, 'published from outside the page');
  report.own.outsideId = outsideId;
  await page.waitForSelector(eventSel(outsideId), { state: 'attached' });
  await page.waitForFunction(
    (id) => [...document.querySelectorAll('#raw .chunk')].some((c) => (c.dataset.text ?? '').includes(`id: ${id}\n`)),
    outsideId,
  );
  report.own.outside = await eventState(page, outsideId);
  report.own.outsideRaw = await rawState(page, outsideId);

  step = 'pause: hold, then show on resume';
  const count = () => page.evaluate(() => ({
    events: document.querySelectorAll('#events .event').length,
    reads: document.querySelectorAll('#raw .chunk').length,
  }));
  report.pause = {};
  await page.click('#pause');
  report.pause.pausedAttr = await page.getAttribute('#pause', 'data-paused');
  report.pause.before = await count();
  const pausedId = await publishWithForm(page, 'published while paused');
  report.pause.id = pausedId;
  // Arrived (counted as held in both views), but not shown.
  step = 'pause: wait for #held to count the event and its read';
  await page.waitForFunction(() => {
    const h = document.querySelector('#held');
    return Number(h.dataset.events) >= 1 && Number(h.dataset.reads) >= 1;
  });
  report.pause.held = await page.evaluate(() => ({
    events: Number(document.querySelector('#held').dataset.events),
    reads: Number(document.querySelector('#held').dataset.reads),
    barShown: [...document.querySelectorAll('.paused-bar')].every((b) => b.offsetHeight > 0),
  }));
  report.pause.during = await count();
  report.pause.eventWhilePaused = await eventState(page, pausedId);
  report.pause.rawWhilePaused = await rawState(page, pausedId);
  step = 'pause: resume';
  await page.click('#pause');
  report.pause.resumedAttr = await page.getAttribute('#pause', 'data-paused');
  step = `pause: wait for ${eventSel(pausedId)} after resume`;
  await page.waitForSelector(eventSel(pausedId), { state: 'attached' });
  report.pause.eventAfterResume = await eventState(page, pausedId);
  report.pause.rawAfterResume = await rawState(page, pausedId);
  report.pause.after = await count();

  report.queries = [];
  for (const query of ['topic=q1&topic=q2', 'topics=q1,q2']) {
    step = `queries: ?${query}`;
    await page.goto(`${opts.base}/?${query}&autoconnect=1`, { waitUntil: 'load' });
    await page.waitForSelector('#state[data-state=open]');
    await page.waitForSelector('#raw .chunk', { state: 'attached' });
    const entry = {
      query,
      topics: await page.inputValue('#topics'),
      source: await page.evaluate(() =>
        [...document.querySelectorAll('#events .conn')].map((n) => n.textContent).find((t) => t.includes('new EventSource(')) ?? null),
      ids: [],
      shown: [],
    };
    for (const t of ['q1', 'q2']) entry.ids.push(await publishOutside(t, opts.type, `to ${t}`));
    for (const id of entry.ids) {
      step = `queries: ?${query}: wait for ${eventSel(id)}`;
      await page.waitForSelector(eventSel(id), { state: 'attached' });
      entry.shown.push(id);
    }
    report.queries.push(entry);
  }

  report.layout = [];
  for (const [width, height] of [[1400, 1000], [800, 600], [390, 844]]) {
    step = `layout at ${width}x${height}`;
    await page.setViewportSize({ width, height });
    await page.goto(report.url, { waitUntil: 'load' });
    await page.waitForSelector('#state[data-state=open]');
    const seen = await page.evaluate(() => {
      const doc = document.documentElement;
      const aside = document.querySelector('aside');
      const style = getComputedStyle(aside);
      const clips = (s) => s.overflowX !== 'visible' || s.overflowY !== 'visible';
      const cards = [...document.querySelectorAll('aside > .card')].map((card) => {
        // As a user would: scroll to it. Only the page may move for that.
        card.scrollIntoView({ block: 'start', inline: 'nearest' });
        const r = card.getBoundingClientRect();
        const fits = r.height <= innerHeight + 0.5;
        const inView = r.left >= -0.5 && r.right <= doc.clientWidth + 0.5 && r.top >= -0.5 &&
          (fits ? r.bottom <= innerHeight + 0.5 : r.top <= 0.5);
        let clippedBy = null;
        for (let a = card.parentElement; a && a !== document.body; a = a.parentElement) {
          if (!clips(getComputedStyle(a))) continue;
          const ar = a.getBoundingClientRect();
          if (r.top < ar.top - 0.5 || r.bottom > ar.bottom + 0.5 || r.left < ar.left - 0.5 || r.right > ar.right + 0.5) {
            clippedBy = `${a.tagName.toLowerCase()}${a.className ? '.' + a.className : ''}`;
          }
        }
        return {
          card: card.getAttribute('aria-labelledby'),
          box: { top: Math.round(r.top), bottom: Math.round(r.bottom), left: Math.round(r.left), right: Math.round(r.right) },
          inView,
          clippedBy,
          pageScrollY: Math.round(scrollY),
        };
      });
      const result = {
        asideDisplay: style.display,
        asideOverflowY: style.overflowY,
        asideScrollHeight: aside.scrollHeight,
        asideClientHeight: aside.clientHeight,
        asideScrollTop: aside.scrollTop,
        pageScrollWidth: doc.scrollWidth,
        pageClientWidth: doc.clientWidth,
        cards,
      };
      scrollTo(0, 0);
      return result;
    });
    report.layout.push({ width, height, ...seen });
  }
}
