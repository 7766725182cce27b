// Runs the README's Uppy snippets as written, in chromium, on a page of another origin than
// intake's: serves that page (and Uppy's bundle from npm) on 127.0.0.1:<page port>, fills in
// intake's address and the token, drops the files into Uppy's Dashboard (tus: all of them, the
// upload of <paused> paused once part of it is in, then resumed; XHRUpload: all but <paused>),
// and prints what Uppy saw as one JSON line.
//
//   node uppy.mjs <intake url> <token> <page port> <readme> <files folder> <paused> <file>...
// PLAYWRIGHT_MODULES: the node_modules folder that holds playwright-core and uppy.
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const [intake, token, pagePort, readme, folder, pausedName, ...names] = process.argv.slice(2);
const modules = process.env.PLAYWRIGHT_MODULES;
const { chromium } = createRequire(join(modules, "/"))("playwright-core");

// The README's snippets, by their first line.
const snippets = {};
for (const [, code] of readFileSync(readme, "utf8").matchAll(/```js\n(\/\/ Uppy → intake[^\n]*\n[\s\S]*?)```/g)) {
  const mode = code.includes("XHRUpload") ? "xhr" : "tus";
  snippets[mode] = code
    .replace('from "uppy"', 'from "/uppy/uppy.min.mjs"')
    .replace('"https://files.example.com"', JSON.stringify(intake))
    .replace("await tokenFromYourBackend()", JSON.stringify(token))
    .concat("\nwindow.uppy = uppy;\n");
}
if (!snippets.tus || !snippets.xhr) throw new Error("the README lost a snippet");

const dist = join(modules, "uppy/dist");
const page = (mode) => `<!doctype html><meta charset="utf-8"><title>app</title>
<link rel="stylesheet" href="/uppy/uppy.min.css"><div id="uploads"></div>
<script type="module" src="/${mode}.mjs"></script>`;
const server = createServer((req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  const [type, body] =
    path.startsWith("/uppy/") ? [path.endsWith(".css") ? "text/css" : "text/javascript", readFileSync(join(dist, path.slice(6)))]
    : path.endsWith(".mjs") ? ["text/javascript", snippets[path.slice(1, -4)]]
    : ["text/html", page(path.slice(1) || "tus")];
  res.writeHead(body ? 200 : 404, { "content-type": type });
  res.end(body);
});
await new Promise((ready) => server.listen(Number(pagePort), "127.0.0.1", ready));
const origin = `http://127.0.0.1:${pagePort}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});

/// Opens the page of `mode`, drops `files` into the Dashboard and starts the upload.
async function start(mode, files, throttle) {
  const tab = await browser.newPage();
  const errors = [];
  tab.on("pageerror", (error) => errors.push(String(error)));
  if (throttle) {
    const network = await tab.context().newCDPSession(tab);
    await network.send("Network.emulateNetworkConditions", {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: throttle,
    });
  }
  await tab.goto(`${origin}/${mode}`);
  await tab.waitForFunction(() => window.uppy);
  await tab.setInputFiles(".uppy-Dashboard-input >> nth=0", files.map((name) => join(folder, name)));
  await tab.waitForFunction((n) => window.uppy.getFiles().length === n, files.length);
  await tab.evaluate(() => { window.done = window.uppy.upload(); });
  return { tab, errors };
}

/// Every file's name, progress, error and (tus) upload URL, once the upload has ended.
const ended = (tab) => tab.evaluate(async () => {
  await window.done;
  return window.uppy.getFiles().map((f) => ({
    name: f.name,
    percentage: f.progress.percentage,
    complete: f.progress.uploadComplete,
    error: f.error ?? null,
    uploadUrl: f.tus?.uploadUrl ?? null,
  }));
});

try {
  const tus = await start("tus", names, 4 * 1024 * 1024);
  await tus.tab.waitForFunction((name) => {
    const file = window.uppy.getFiles().find((f) => f.name === name);
    return file.progress.bytesUploaded > 2 * 1024 * 1024 && file.tus?.uploadUrl;
  }, pausedName);
  const paused = await tus.tab.evaluate((name) => {
    const { id } = window.uppy.getFiles().find((f) => f.name === name);
    window.uppy.pauseResume(id);
    const file = window.uppy.getFile(id);
    return { isPaused: file.isPaused, percentage: file.progress.percentage, uploadUrl: file.tus.uploadUrl };
  }, pausedName);
  await tus.tab.evaluate((name) => {
    window.uppy.pauseResume(window.uppy.getFiles().find((f) => f.name === name).id);
  }, pausedName);
  const tusFiles = await ended(tus.tab);

  // XHRUpload: one request per file.
  const xhr = await start("xhr", names.filter((name) => name !== pausedName), 0);
  const xhrFiles = await ended(xhr.tab);
  if (process.env.SHOTS) await xhr.tab.screenshot({ path: join(process.env.SHOTS, "uppy-xhr.png") });

  console.log(JSON.stringify({
    tus: tusFiles, paused, xhr: xhrFiles, pageErrors: [...tus.errors, ...xhr.errors],
  }));
} finally {
  await browser.close();
  server.close();
}
