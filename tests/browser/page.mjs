// Drives intake's page (`/`) in Debian's chromium with playwright-core, as a person would, and
// prints what happened as one JSON line. The Rust test (tests/api/browser.rs) starts the server
// and checks the result against the server's own answers.
//
//   node page.mjs <base url> <token> <files dir> <screenshots dir>
// The files dir holds one.txt, two.bin (both small) and big.bin (over the server's limit).
// PLAYWRIGHT_MODULES: the node_modules folder that holds playwright-core and axe-core.
// REVOKE: the command (a JSON array) an operator runs to revoke the token mid-session.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";

const { chromium } = createRequire(join(process.env.PLAYWRIGHT_MODULES, "/"))("playwright-core");

const [base, token, files, shots] = process.argv.slice(2);
const axeSource = await readFile(join(process.env.PLAYWRIGHT_MODULES, "axe-core/axe.min.js"), "utf8");

// What axe-core finds wrong with the page as it is now: each rule broken, with where. Run
// through the debugger protocol, which the page's CSP does not govern.
async function accessibilityFaults(page) {
  await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const { violations } = await window.axe.run();
    return violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const result = {};
try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const violations = [];
  page.on("console", (message) => {
    if (/Content.Security.Policy/i.test(message.text())) violations.push(message.text());
  });
  const notFound = [];
  page.on("response", (response) => {
    if (response.status() === 404) notFound.push(response.url());
  });
  await page.goto(base + "/");

  // The keyboard reaches every control in reading order, and each shows its focus.
  result.tabOrder = [];
  result.focusShown = [];
  for (let i = 0; i < 3; i++) {
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => {
      const element = document.activeElement;
      const shown = element.id === "pick" ? element.nextElementSibling : element;
      return { id: element.id || element.textContent.trim(), outline: getComputedStyle(shown).outlineStyle };
    });
    result.tabOrder.push(focused.id);
    result.focusShown.push(focused.outline);
  }

  // Before signing in: no table, only what to do.
  await page.locator("#files-status", { hasText: "Sign in" }).waitFor();
  result.tableBeforeSignIn = await page.locator("#files").isVisible();
  // A file sent before signing in: told to sign in, in words; then the row is cleared.
  await page.setInputFiles("#pick", [join(files, "one.txt")]);
  await page.locator(".upload.failed").waitFor();
  result.withoutToken = await page.locator(".upload.failed .state").textContent();
  await page.getByRole("button", { name: "Clear finished" }).click();
  // A wrong token is refused in the server's words, and kept nowhere.
  await page.getByLabel("Token").fill("intake_not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#who", { hasText: "Not signed in" }).waitFor();
  result.wrongToken = await page.locator("#who").textContent();
  result.signOutAfterWrong = await page.locator("#sign-out").isVisible();
  // Sign in by pasting the token; labels lead to the fields.
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#who", { hasText: "Signed in as" }).waitFor();
  result.signedIn = await page.locator("#who").textContent();
  result.tokenInUrl = page.url().includes(token);
  await page.locator("#limits", { hasText: "quota" }).waitFor();
  result.limits = await page.locator("#limits").textContent();

  // Two files by the file input: both reach 100% and appear in the list.
  await page.setInputFiles("#pick", [join(files, "one.txt"), join(files, "two.bin")]);
  await page.locator(".upload.done").nth(1).waitFor();
  result.progress = await page.locator(".upload progress").evaluateAll((bars) => bars.map((b) => b.value));
  await page.locator("#files tbody tr", { hasText: "two.bin" }).waitFor();
  result.listed = await page.locator("#files tbody tr td:first-child").allTextContents();
  result.goes = await page.locator("#files tbody tr td:nth-child(4)").allTextContents();

  // A file over the limit: the server's reason, next to it.
  await page.setInputFiles("#pick", [join(files, "big.bin")]);
  const failed = page.locator(".upload.failed", { hasText: "big.bin" });
  await failed.waitFor();
  result.tooLarge = await failed.locator(".state").textContent();
  result.retryShown = await failed.locator(".retry").isVisible();
  await page.locator("#overall-state", { hasText: "not stored" }).waitFor();
  result.overall = await page.locator("#overall-state").textContent();
  // Signed in, files listed, an upload stored and one refused: axe-core finds nothing.
  result.accessibility = await accessibilityFaults(page);

  // Download from the list: the bytes are the file's.
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download one.txt" }).click(),
  ]);
  result.downloadedName = download.suggestedFilename();
  result.downloadedSha256 = createHash("sha256").update(await readFile(await download.path())).digest("hex");

  // Shared: a second browser, with no token, downloads it through the link.
  await page.getByRole("button", { name: "Share one.txt" }).click();
  await page.locator("#shared").waitFor();
  result.sharedLabel = await page.locator("#shared-label").textContent();
  const sharedUrl = await page.locator("#shared-url").inputValue();
  result.sharedUrl = sharedUrl;
  const visitor = await browser.newContext({ acceptDownloads: true });
  const visit = await visitor.newPage();
  const [shared] = await Promise.all([
    visit.waitForEvent("download"),
    visit.goto(sharedUrl).catch(() => {}),
  ]);
  result.sharedName = shared.suggestedFilename();
  result.sharedSha256 = createHash("sha256").update(await readFile(await shared.path())).digest("hex");
  // Its list says who came (once the page asks again), and Revoke ends it for the visitor.
  await page.getByLabel("Share links last").selectOption("1d");
  await page.getByRole("button", { name: "Share one.txt" }).click();
  await page.locator("#links li").nth(1).waitFor();
  result.linkList = await page.locator("#links li").allTextContents();
  await page.getByRole("button", { name: /^Revoke/ }).first().click();
  await page.locator("#files-status", { hasText: "Link revoked" }).waitFor();
  result.linksAfterRevoke = await page.locator("#links li").count();
  result.revokedStatus = (await visit.goto(sharedUrl)).status();

  // Requested: an upload link for one file, and the same visitor, still without a token,
  // sends a file through its page; a second is refused in words.
  await page.getByLabel("Files at most").fill("1");
  await page.getByRole("button", { name: "Make an upload link" }).click();
  await page.locator("#requested").waitFor();
  result.requestedLabel = await page.locator("#requested-label").textContent();
  const requestedUrl = await page.locator("#requested-url").inputValue();
  result.requestedUrl = requestedUrl;
  await visit.goto(requestedUrl);
  await visit.locator("#visitor", { hasText: "no token" }).waitFor();
  await visit.locator("#limits", { hasText: "Files up to" }).waitFor();
  result.visitorLimits = await visit.locator("#limits").textContent();
  result.visitorSeesOwnersParts = await visit.evaluate(() =>
    ["#sign-in", "#requests", "#yours"].filter((part) => !document.querySelector(part).hidden),
  );
  await visit.setInputFiles("#pick", [join(files, "sent.txt")]);
  await visit.locator(".upload.done").waitFor();
  await visit.setInputFiles("#pick", [join(files, "sent.txt")]);
  await visit.locator(".upload.failed").waitFor();
  result.visitorRefused = await visit.locator(".upload.failed .state").textContent();
  await visitor.close();

  // Delete, confirmed.
  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: "Delete two.bin" }).click();
  await page.locator("#files tbody tr", { hasText: "two.bin" }).waitFor({ state: "detached" });
  result.afterDelete = await page.locator("#files tbody tr td:first-child").allTextContents();
  // Finished rows go with one click.
  await page.getByRole("button", { name: "Clear finished" }).click();
  result.rowsAfterClear = await page.locator(".upload").count();
  result.batchAfterClear = await page.locator("#batch").isVisible();
  // The owner's page, loaded again, still lists the file sent through the link, and says what the link received.
  await page.reload();
  await page.locator("#files tbody tr", { hasText: "sent.txt" }).waitFor();
  await page.locator("#upload-links li").first().waitFor();
  result.uploadLinks = await page.locator("#upload-links li").allTextContents();
  result.afterReload = await page.locator("#files tbody tr td:first-child").allTextContents();
  await page.locator("#usage", { hasText: "Using 36 B" }).waitFor();
  result.usage = await page.locator("#usage").textContent();
  await page.screenshot({ path: join(shots, "page-1280.png"), fullPage: true });

  // A phone's width: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  result.overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  result.accessibilityNarrow = await accessibilityFaults(page);
  await page.screenshot({ path: join(shots, "page-390.png"), fullPage: true });

  // The token revoked mid-session by an operator: the next request signs the page out, in the
  // server's words, and the file it tried to send says what to do.
  const [command, ...args] = JSON.parse(process.env.REVOKE);
  execFileSync(command, args, { stdio: "ignore" });
  await page.setInputFiles("#pick", [join(files, "one.txt")]);
  await page.locator("#who", { hasText: "Signed out" }).waitFor();
  result.revoked = await page.locator("#who").textContent();
  result.signOutAfterRevoke = await page.locator("#sign-out").isVisible();
  result.sentAfterRevoke = await page.locator(".upload.failed .state").textContent();
  await page.locator("#files-status", { hasText: "Sign in" }).waitFor();
  result.tableAfterRevoke = await page.locator("#files").isVisible();
  result.cspViolations = violations;
  result.notFound = notFound;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
