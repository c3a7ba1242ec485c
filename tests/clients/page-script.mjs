// Runs a README JavaScript block in a page of sseloop's own origin, in
// headless Chromium driven by the npm package `playwright-core`, for
// scripts/check-readme.sh.
//
//   node page-script.mjs PAGE_URL --script FILE --then COMMAND
//        [--timeout-ms MS] [--chromium PATH]
//
// It opens PAGE_URL (the wire inspector, a page of the server's origin),
// adds FILE to it as a classic script, and waits until the page has a
// response to a request for /events (the script has subscribed). Then it
// runs COMMAND with bash (the README's publish command), takes what it
// printed (the id the publish was given), and waits until the page logs a
// console message that holds that id. It prints one JSON object with what
// it saw (the first key is "report": "page-script") and exits 0 when the
// message came and the page threw no error, 1 otherwise; a step that takes
// longer than --timeout-ms fails with `failed` naming it.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { ending, launchChromium } from './chromium-check.mjs';

const USAGE =
  'usage: node page-script.mjs PAGE_URL --script FILE --then COMMAND ' +
  '[--timeout-ms MS] [--chromium PATH]';

function parseArgs(argv) {
  const opts = { url: null, script: null, then: null, timeoutMs: 15000, chromium: '/usr/bin/chromium' };
  const names = { '--script': 'script', '--then': 'then', '--timeout-ms': 'timeoutMs', '--chromium': 'chromium' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg in names) {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      opts[names[arg]] = argv[++i];
    } else if (arg.startsWith('--') || opts.url !== null) {
      usage(`unexpected argument ${arg}`);
    } else {
      opts.url = arg;
    }
  }
  if (!opts.url || !opts.script || !opts.then) usage('PAGE_URL, --script and --then are needed');
  opts.timeoutMs = Number(opts.timeoutMs);
  if (!Number.isInteger(opts.timeoutMs) || opts.timeoutMs <= 0) usage('bad --timeout-ms');
  return opts;
}

function usage(why) {
  console.error(`page-script: ${why}\n${USAGE}`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const report = {
  report: 'page-script',
  url: opts.url,
  failed: null,
  subscribed: null,
  commandOutput: null,
  id: null,
  logged: null,
  console: [],
  pageErrors: [],
};

let step = 'launch chromium';
let browser = null;
const { finish, failAfter } = ending(report, () => browser);
failAfter(8 * opts.timeoutMs, () => `${step}: the whole run took longer than ${8 * opts.timeoutMs} ms`);

function run(command) {
  return new Promise((resolve, reject) => {
    execFile('bash', ['-c', command], { timeout: opts.timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command}: ${err.message}${stderr}`));
      else resolve(stdout);
    });
  });
}

try {
  const source = await readFile(opts.script, 'utf8');
  browser = await launchChromium(opts.chromium, opts.timeoutMs);
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(opts.timeoutMs);
  // The message may come before the command has returned the id: every
  // message is kept, and the first to hold the id, once known, settles it.
  let wanted = null;
  let settle;
  const logged = new Promise((resolve) => (settle = resolve));
  page.on('console', (msg) => {
    report.console.push(msg.text());
    if (wanted !== null && msg.text().includes(wanted)) settle(msg.text());
  });
  page.on('pageerror', (err) => report.pageErrors.push(String(err && err.stack ? err.stack : err)));

  step = 'load the page';
  await page.goto(opts.url, { waitUntil: 'load' });

  // A stream's response comes with its head, which sseloop writes at once.
  step = 'add the script and wait for its /events response';
  const subscribed = page.waitForResponse((r) => new URL(r.url()).pathname === '/events');
  await page.addScriptTag({ content: source });
  const response = await subscribed;
  report.subscribed = `${response.status()} ${response.url()}`;

  step = `run ${opts.then}`;
  report.commandOutput = await run(opts.then);
  report.id = report.commandOutput.trim();
  if (!report.id) throw new Error('the command printed nothing');

  step = `wait for a console message holding ${report.id}`;
  wanted = report.id;
  const early = report.console.find((text) => text.includes(wanted));
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), opts.timeoutMs);
  });
  report.logged = early ?? (await Promise.race([logged, late]));
  clearTimeout(timer);
  finish(report.pageErrors.length === 0 ? 0 : 1);
} catch (err) {
  report.failed = `${step}: ${err && err.message ? err.message : err}`;
  finish(1);
}
