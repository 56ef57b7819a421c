// Drives the built page in a real Chromium (playwright-core; no browser download: the system's
// Chromium is given by path) through the steps of a JSON plan, printing one JSON line per step.
//
//   node web/test/drive.mjs plan.json
//
// plan: {url, chromium, webcamVideo?, timeoutMs?, steps: [{id, action, ...}]}, actions:
//   upload     {file, whole?}      choose the file in the page's file input; the page's result
//   benchmark  {file, repeats?, minFace?}  upload, then window.ferDemo.benchmark() on it
//   webcam     {minFrames?}        start the webcam (a fake one showing plan.webcamVideo, a
//                                  .y4m file), wait for frames with faces, stop it; the result
//   screenshot {file?, path, width?, height?}  optionally upload, then save a PNG of the page
// The last line is {"id": "_session", requests, foreign, errors}: every URL the page asked
// for, those not on the page's own origin (nothing must leave the device), console errors.
import fs from "node:fs";
import { chromium } from "playwright-core";

const plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const timeout = plan.timeoutMs ?? 60000;
const args = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
if (plan.webcamVideo) {
  args.push("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-video-capture=${plan.webcamVideo}`);
}
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const browser = await chromium.launch({ executablePath: plan.chromium, headless: true, args, timeout });
const origin = new URL(plan.url).origin;
const requests = [];
const errors = [];
try {
  const context = await browser.newContext({ viewport: { width: plan.width ?? 1280, height: plan.height ?? 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on("request", (r) => requests.push(r.url()));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  const t0 = Date.now();
  await page.goto(plan.url);
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state));
  const state = await page.evaluate(() => document.body.dataset.state);
  print({ id: "_load", ms: Date.now() - t0, state, message: await page.textContent("#message") });
  if (state !== "ready") throw new Error("the page did not start: " + (await page.textContent("#message")));

  const upload = async (file, whole = false) => {
    await page.setChecked("#whole", whole);
    await page.waitForFunction(() => document.body.dataset.state !== "busy");
    await page.evaluate(() => (document.body.dataset.state = "waiting"));
    await page.setInputFiles("#file", file);
    await page.waitForFunction(() => document.body.dataset.state === "done");
    return page.evaluate(() => window.ferDemo.result);
  };

  for (const step of plan.steps) {
    const t = Date.now();
    let out;
    if (step.action === "upload") {
      out = { result: await upload(step.file, step.whole) };
      out.shown = await page.textContent("#message");
      out.barsShown = await page.locator("#faces .bars tr").count();
    } else if (step.action === "benchmark") {
      await upload(step.file);
      out = { benchmark: await page.evaluate(([repeats, minFace]) => window.ferDemo.benchmark({ repeats, minFace }),
        [step.repeats ?? 20, step.minFace ?? 30]) };
    } else if (step.action === "webcam") {
      const before = await page.evaluate(() => window.ferDemo.frames);
      await page.click("#webcam");
      await page.waitForFunction(([n, k]) => window.ferDemo.frames >= n + k &&
        window.ferDemo.result?.faces.length > 0, [before, step.minFrames ?? 3]);
      out = { result: await page.evaluate(() => window.ferDemo.result),
        frames: (await page.evaluate(() => window.ferDemo.frames)) - before,
        timing: await page.textContent("#timing") };
      await page.click("#webcam");
    } else if (step.action === "screenshot") {
      if (step.width) await page.setViewportSize({ width: step.width, height: step.height ?? 900 });
      if (step.file) await upload(step.file);
      await page.screenshot({ path: step.path, fullPage: step.fullPage ?? false });
      out = { path: step.path };
    } else {
      throw new Error(`unknown action ${step.action}`);
    }
    print({ id: step.id, ms: Date.now() - t, ...out });
  }
} finally {
  const foreign = requests.filter((u) => !u.startsWith(origin + "/") && !u.startsWith("blob:") && !u.startsWith("data:"));
  print({ id: "_session", requests: [...new Set(requests)], foreign, errors });
  await browser.close();
}
