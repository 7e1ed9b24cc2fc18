// Drives the dashboard of a `floe serve` for tests/dashboard_pipelines.rs: waits for the
// pipelines table to list every file of FLOE_EXPECT_FILES (comma-separated) with the status
// of each in FLOE_EXPECT_STATUS (file=STATUS,...), clicks "Start" on FLOE_START_FILE (a
// pipeline cancelled through the API) and waits for it to be ready again.
//
// Output: one line `RESULT {json}` with the rows; any failure exits non-zero with the reason.
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
const screenshot = need('FLOE_SCREENSHOT');
const expectStatus = need('FLOE_EXPECT_STATUS').split(',').map((p) => p.split('='));
const startFile = need('FLOE_START_FILE');

const profile = mkdtempSync(join(tmpdir(), 'floe-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
context.setDefaultTimeout(DEADLINE_MS);

async function step(what, promise) {
  try {
    return await promise;
  } catch (e) {
    throw new Error(`${what}: ${e && e.message || e}`);
  }
}

const pageErrors = [];
let result;
try {
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e && e.stack || e)));
  await step(`open ${url}`, page.goto(url));
  await step('the pipelines section', page.locator('#pipelines').waitFor({ state: 'visible' }));
  for (const [file, status] of expectStatus) {
    const cell = page.locator(`#pipelines-table tbody tr[data-file="${file}"] .state`);
    await step(`${file} shown as ${status}`, page.waitForFunction(
      ([f, s]) => {
        const c = document.querySelector(`#pipelines-table tbody tr[data-file="${f}"] .state`);
        return c && c.textContent.trim() === s;
      }, [file, status]));
    await cell.waitFor();
  }
  const rows = () => page.$$eval('#pipelines-table tbody tr[data-file]', (rs) => rs.map((r) => ({
    file: r.dataset.file,
    ready: r.dataset.ready,
    cells: [...r.cells].map((c) => c.textContent.trim()),
  })));
  const before = await rows();
  const start = page.locator(`#pipelines-table tbody tr[data-file="${startFile}"] button.start`);
  await step(`a Start button for ${startFile}`, start.waitFor());
  await start.click();
  await step(`${startFile} ready again`, page.locator(
    `#pipelines-table tbody tr[data-file="${startFile}"][data-ready="true"] .state-running`).waitFor());
  result = { before, after: await rows(), pageErrors };
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (e) {
  console.error(`pipelines.mjs: ${e && e.message || e}`);
  if (pageErrors.length) console.error(`uncaught errors in the page:\n${pageErrors.join('\n')}`);
  try {
    const page = context.pages()[0];
    if (page) await page.screenshot({ path: screenshot, fullPage: true });
  } catch (_) { /* only a help */ }
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (result) console.log(`RESULT ${JSON.stringify(result)}`);
