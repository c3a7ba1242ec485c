// What the headless-Chromium checks share (inspector-check.mjs, lab-check.mjs,
// page-script.mjs): how Chromium is started, and how a check ends, with one
// report line however and however often it is asked to end.
import { chromium } from 'playwright-core';

// Headless Chromium at `executablePath`: nothing resolvable but 127.0.0.1 and
// no background traffic, so the page talks to the server under test only.
export function launchChromium(executablePath, timeoutMs) {
  return chromium.launch({
    executablePath,
    headless: true,
    timeout: timeoutMs,
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
}

// `finish(code)` prints `report` as one JSON line and exits with `code` once
// the browser (`browser()`, null before launch) is closed; `failAfter(ms, why)`
// is the last resort should one of Playwright's own steps (launch, close) hang:
// after `ms` it sets `report.failed` to `why()` and finishes with 1.
export function ending(report, browser) {
  let finished = false;
  function finish(code) {
    // The last-resort timer can fire while a finish is closing the browser,
    // and the steps fail once it is closed: the first finish is the only report.
    if (finished) return;
    finished = true;
    process.stdout.write(JSON.stringify(report) + '\n');
    const open = browser();
    const close = open ? open.close().catch(() => {}) : Promise.resolve();
    // Closing must not hang the exit; the caller kills the group anyway.
    const bound = new Promise((resolve) => setTimeout(resolve, 5000).unref());
    Promise.race([close, bound]).then(() => process.exit(code));
  }
  function failAfter(ms, why) {
    setTimeout(() => {
      if (finished) return;
      report.failed = why();
      finish(1);
    }, ms).unref();
  }
  return { finish, failAfter };
}
