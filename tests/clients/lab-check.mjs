// Drives sseloop's failure lab page (GET /lab, src/lab.html) in headless
// Chromium through the npm package `playwright-core`, for the integration
// tests in tests/it/lab/browsers.rs (which also take the README's picture).
//
//   node lab-check.mjs BASE_URL --lesson L [--rate R] [--size S] [--count N]
//        [--screenshot PATH] [--timeout-ms MS] [--total-timeout-ms MS] [--chromium PATH]
//
// It opens BASE_URL/lab?lesson=L&…&autostart=1 at 1400x900: the page runs the
// lesson with its cause, then with its fix, as a learner's click on "Run"
// does. When both runs are done it prints one JSON object (the first key is
// "report": "lab-check") with what the page measured (window.labReport: each
// run's events with their delays, the reads off the wire, the stream's errors
// and reconnects with the Last-Event-ID the lab received), the panels' state
// and the console and page errors, and exits 0; judging it is the caller's
// job. A step that does not finish within its time prints the report so far
// with `failed` naming the step and exits 1.
import { ending, launchChromium } from './chromium-check.mjs';

const USAGE =
  'usage: node lab-check.mjs BASE_URL --lesson L [--rate R] [--size S] [--count N] ' +
  '[--screenshot PATH] [--timeout-ms MS] [--total-timeout-ms MS] [--chromium PATH]';

function parseArgs(argv) {
  const opts = {
    base: null,
    lesson: null,
    rate: null,
    size: null,
    count: null,
    screenshot: null,
    timeoutMs: 15000,
    totalTimeoutMs: 180000,
    chromium: '/usr/bin/chromium',
  };
  const names = {
    '--lesson': 'lesson', '--rate': 'rate', '--size': 'size', '--count': 'count',
    '--screenshot': 'screenshot', '--timeout-ms': 'timeoutMs',
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
  if (!opts.lesson) usage('--lesson is missing');
  for (const key of ['timeoutMs', 'totalTimeoutMs']) {
    opts[key] = Number(opts[key]);
    if (!Number.isInteger(opts[key]) || opts[key] < 0) usage(`bad --${key} value`);
  }
  return opts;
}

function usage(why) {
  console.error(`lab-check: ${why}\n${USAGE}`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const query = new URLSearchParams({ lesson: opts.lesson, autostart: '1' });
for (const key of ['rate', 'size', 'count']) if (opts[key] !== null) query.set(key, opts[key]);
const report = {
  report: 'lab-check',
  url: `${opts.base}/lab?${query}`,
  failed: null,
  lab: null,
  panels: null,
  status: null,
  consoleErrors: [],
  pageErrors: [],
  screenshot: null,
};

let step = 'launch chromium';
let browser = null;
const { finish, failAfter } = ending(report, () => browser);
failAfter(opts.totalTimeoutMs, () => `${step}: the whole check took longer than ${opts.totalTimeoutMs} ms`);

let page = null;
try {
  browser = await launchChromium(opts.chromium, opts.timeoutMs);
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  page = await context.newPage();
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

  // Both runs, one after the other; the page bounds each run itself.
  step = 'wait for both runs to finish';
  await page.waitForFunction(() => window.labReport && window.labReport.finished === true, null, {
    timeout: opts.totalTimeoutMs,
    polling: 200,
  });

  step = 'read the report';
  report.lab = await page.evaluate(() => window.labReport);
  report.panels = await page.evaluate(() =>
    Object.fromEntries(['cause', 'fix'].map((side) => {
      const panel = document.querySelector(`#run-${side}`);
      return [side, {
        state: panel.dataset.state,
        median: panel.querySelector('.med').textContent,
        dots: panel.querySelectorAll('.plot circle').length,
        notes: [...panel.querySelectorAll('.notes div')].map((d) => d.textContent),
        reads: panel.querySelectorAll('.reads div').length,
      }];
    })));
  report.status = await page.textContent('#status');

  if (opts.screenshot) {
    step = 'screenshot';
    await page.screenshot({ path: opts.screenshot, fullPage: true });
    report.screenshot = opts.screenshot;
  }
  finish(0);
} catch (err) {
  report.failed = `${step}: ${err && err.message ? err.message : err}`;
  try {
    if (page) report.lab = await page.evaluate(() => window.labReport);
  } catch {
    // the page is gone: report what there is
  }
  finish(1);
}
