// Drives floe's dashboard in headless Chromium for tests/dashboard_browser.rs: open the page,
// wait for a job and a completed checkpoint in the history, trigger a savepoint (first without a
// directory when asked, to see the API's error shown), wait for its path, take a screenshot.
//
// Inputs (environment): FLOE_URL, FLOE_CHROMIUM, FLOE_SAVEPOINT_DIR, FLOE_SCREENSHOT,
// FLOE_EXPECT_MISSING_DIR_ERROR=1. Output: one line `RESULT {json}` on stdout for the Rust test
// to assert on; any failure exits non-zero with the reason on stderr.
//
// Every wait is for something to appear in the page, with a deadline far above a normal run.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const DEADLINE_MS = 60_000;

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const url = need('FLOE_URL');
const executablePath = need('FLOE_CHROMIUM');
const savepointDir = need('FLOE_SAVEPOINT_DIR');
const screenshot = need('FLOE_SCREENSHOT');
const expectMissingDirError = process.env.FLOE_EXPECT_MISSING_DIR_ERROR === '1';

// Chromium needs its own profile, and without the background-networking flags it keeps calling
// Google's hosts, which a closed network refuses.
const profile = mkdtempSync(join(tmpdir(), 'floe-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  // Playwright's own launch timeout is 30 s: a loaded machine can take longer to start it.
  timeout: DEADLINE_MS,
  viewport: { width: 1400, height: 1000 },
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
context.setDefaultTimeout(DEADLINE_MS);

// Names the step a wait belongs to, so a timeout says what never appeared.
async function step(what, promise) {
  try {
    return await promise;
  } catch (e) {
    throw new Error(`${what}: ${e && e.message || e}`);
  }
}

const pageErrors = [];
const consoleErrors = [];
let result;
try {
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e && e.stack || e)));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('dialog', (d) => d.accept());

  await step(`open ${url}`, page.goto(url));
  const jobRow = page.locator('#jobs-table tbody tr[data-job-id]').first();
  await step('a job in #jobs-table (GET /jobs/overview)', jobRow.waitFor());
  const jobId = await jobRow.getAttribute('data-job-id');
  await jobRow.click();
  await step('the job view', page.locator('#job-view').waitFor({ state: 'visible' }));
  await step('a vertex in #job-graph (GET /jobs/:id vertices)', page.locator('#job-graph [data-vertex-id]').first().waitFor());
  await step('a COMPLETED row in #checkpoint-history (GET /jobs/:id/checkpoints history)',
    page.locator('#checkpoint-history tbody tr[data-checkpoint-id][data-status="COMPLETED"]').first().waitFor());

  const button = page.locator('#savepoint-button');
  let missingDirError = null;
  if (expectMissingDirError) {
    await page.fill('#savepoint-dir', '');
    await button.click();
    const err = page.locator('#errors li[data-source="action"]');
    await step('the API error for a savepoint without a directory, in #errors', err.waitFor());
    missingDirError = (await err.textContent()).trim();
    await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-error.png' });
    await page.waitForFunction(() => !document.querySelector('#savepoint-button').disabled);
  }

  await page.fill('#savepoint-dir', savepointDir);
  await button.click();
  // Either the location shows, or the page shows the API's error: stop at whichever comes first.
  const outcome = await step('#savepoint-location or an error (POST /jobs/:id/savepoints, then GET …/savepoints/:triggerid)', page.waitForFunction(() => {
    const loc = document.querySelector('#savepoint-location').textContent.trim();
    if (loc) return { location: loc };
    const err = document.querySelector('#errors li[data-source="action"]');
    return err ? { error: err.textContent.trim() } : null;
  }).then((h) => h.jsonValue()));
  if (outcome.error) throw new Error(`the page shows an error after the savepoint click: ${outcome.error}`);

  // The savepoint shows up in the history on a later poll; wait for it so the screenshot has it.
  await step('the savepoint as a row of #checkpoint-history (is_savepoint: true)',
    page.locator('#checkpoint-history tbody tr.savepoint').first().waitFor());

  const vertices = await page.$$eval('#job-graph [data-vertex-id]', (gs) => gs.map((g) => ({
    id: g.dataset.vertexId,
    parallelism: g.dataset.parallelism,
    readRecords: g.dataset.readRecords,
    writeRecords: g.dataset.writeRecords,
    text: g.textContent,
  })));
  const checkpointRows = await page.$$eval('#checkpoint-history tbody tr[data-checkpoint-id]', (rs) => rs.map((r) => ({
    id: r.dataset.checkpointId,
    status: r.dataset.status,
    cells: [...r.cells].map((c) => c.textContent.trim()),
  })));
  const text = (sel) => page.locator(sel).textContent().then((t) => t.trim());
  result = {
    jobId,
    location: outcome.location,
    missingDirError,
    vertices,
    checkpointRows,
    latestRestore: await text('#latest-restore'),
    checkpointConfig: await text('#checkpoint-config'),
    jobState: await text('#job-state'),
    pageText: await page.locator('body').innerText(),
    pageErrors,
    consoleErrors,
  };
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (e) {
  console.error(`dashboard.mjs: ${e && e.message || e}`);
  if (pageErrors.length) console.error(`uncaught errors in the page:\n${pageErrors.join('\n')}`);
  if (consoleErrors.length) console.error(`console errors:\n${consoleErrors.join('\n')}`);
  try {
    const page = context.pages()[0];
    if (page) await page.screenshot({ path: screenshot, fullPage: true });
    console.error(`screenshot of the page at failure: ${screenshot}`);
  } catch (_) { /* the screenshot is only a help */ }
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (result) console.log(`RESULT ${JSON.stringify(result)}`);
