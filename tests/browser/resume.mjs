// Sends one file through intake's page with the upload throttled, so that the test can restart
// the server mid-way (or, with `offline`, the browser goes offline mid-way and back; with
// `pause`, the person pauses and resumes it); prints the upload's last state as one JSON line
// once it has ended.
//
//   node resume.mjs <base url> <file> [offline|pause]
// PLAYWRIGHT_MODULES: the node_modules folder that holds playwright-core.
import { createRequire } from "node:module";
import { join } from "node:path";

const [base, file, mode] = process.argv.slice(2);
const { chromium } = createRequire(join(process.env.PLAYWRIGHT_MODULES, "/"))("playwright-core");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage();
  // 4 MiB/s up: a 24 MiB file takes seconds, long enough to stop the server under it.
  const network = await page.context().newCDPSession(page);
  await network.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: 4 * 1024 * 1024,
  });
  await page.goto(base + "/");
  await page.setInputFiles("#pick", [file]);
  const row = page.locator(".upload");
  let waited = null;
  if (mode === "pause") {
    await row.locator(".state", { hasText: "%" }).waitFor();
    await page.getByRole("button", { name: "Pause big.bin" }).click();
    waited = await row.locator(".state").textContent();
    await page.getByRole("button", { name: "Resume big.bin" }).click();
  }
  if (mode === "offline") {
    await row.locator(".state", { hasText: "%" }).waitFor();
    await network.send("Network.emulateNetworkConditions", {
      offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
    });
    const waiting = row.locator(".state", { hasText: /Waiting|Not stored/ });
    await waiting.waitFor({ timeout: 120000 });
    waited = await waiting.textContent();
    await network.send("Network.emulateNetworkConditions", {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 4 * 1024 * 1024,
    });
  }
  await row.locator(".state", { hasText: /stored|Not stored/ }).waitFor({ timeout: 120000 });
  console.log(JSON.stringify({
    waited,
    state: await row.locator(".state").textContent(),
    progress: await row.locator("progress").evaluate((bar) => bar.value),
  }));
} finally {
  await browser.close();
}
