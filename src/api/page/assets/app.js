// intake's page: resumable uploads (tus) with progress, the caller's files and links. At an
// upload link's URL (/send/SECRET) it is a visitor's page: no token, uploads go through the link.
"use strict";

const TOKEN_KEY = "intake.token";
// The upload link's secret, when the page is opened at its URL.
const LINK = location.pathname.startsWith("/send/") ? location.pathname.slice("/send/".length) : null;
const CHUNK_BYTES = 8 * 1024 * 1024;
const PAGE = 20;

const $ = (selector) => document.querySelector(selector);

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function authHeaders() {
  return token() ? { Authorization: `Bearer ${token()}` } : {};
}

// Who an upload acts for: the upload link's secret on a visitor's page, else the token.
function uploadHeaders() {
  return LINK ? { "Upload-Link": LINK } : authHeaders();
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? n : n.toFixed(1)} ${units[unit]}`;
}

function duration(seconds) {
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
}

// The words of a problem+json answer (its `detail`), with the wait a 429 asks for.
async function problemText(status, bodyText, retryAfter) {
  let detail = `the server answered ${status}`;
  try {
    const problem = JSON.parse(bodyText);
    if (problem.detail) detail = problem.detail;
  } catch (_) {
    // Not JSON: keep the status.
  }
  if (status === 429 && retryAfter) detail += ` (retry in ${retryAfter} s)`;
  // "the 1048576-byte limit", "a quota of 10485760 bytes": sizes as people read them.
  return detail.replace(/\b(\d{4,})(-byte| bytes)\b/g, (_, n) => bytes(Number(n)));
}

function tusErrorText(error) {
  const response = error.originalResponse;
  if (!response) return "the connection failed";
  return problemText(response.getStatus(), response.getBody(), response.getHeader("Retry-After"));
}

// The files sent from this page, for the batch's progress: bytes sent of each, and how it
// ended ("stored", "failed", "cancelled"; null while under way).
const batch = new Map();

function showBatch() {
  const entries = [...batch.values()].filter((entry) => entry.end !== "cancelled");
  $("#batch").hidden = batch.size === 0;
  const total = entries.reduce((sum, entry) => sum + entry.size, 0);
  const sent = entries.reduce((sum, entry) => sum + entry.sent, 0);
  const percent = total ? Math.floor((sent / total) * 100) : 100;
  const stored = entries.filter((entry) => entry.end === "stored").length;
  const failed = entries.filter((entry) => entry.end === "failed").length;
  $("#overall").value = percent;
  $("#overall-state").textContent =
    `${stored} of ${entries.length} stored · ${percent}%` + (failed ? ` · ${failed} not stored` : "");
  $("#clear").hidden = ![...batch.values()].some((entry) => entry.end !== null);
}

function clearFinished() {
  for (const [row, entry] of batch) {
    if (entry.end === null) continue;
    row.remove();
    batch.delete(row);
  }
  showBatch();
}

function send(file) {
  const row = $("#upload-row").content.firstElementChild.cloneNode(true);
  row.querySelector(".name").textContent = file.name;
  row.querySelector(".size").textContent = bytes(file.size);
  const bar = row.querySelector("progress");
  bar.setAttribute("aria-label", `Progress of ${file.name}`);
  const state = row.querySelector(".state");
  const cancel = row.querySelector(".cancel");
  cancel.setAttribute("aria-label", `Cancel ${file.name}`);
  const pause = row.querySelector(".pause");
  pause.setAttribute("aria-label", `Pause ${file.name}`);
  const retry = row.querySelector(".retry");
  retry.setAttribute("aria-label", `Retry ${file.name}`);
  $("#uploads").append(row);
  const entry = { size: file.size, sent: 0, end: null };
  batch.set(row, entry);
  showBatch();
  const ended = (end) => {
    entry.end = end;
    for (const button of [pause, cancel]) button.hidden = true;
    showBatch();
  };

  let started = null;
  let startedAt = 0;
  const metadata = { filename: file.name, filetype: file.type || "application/octet-stream" };
  if ($("#keep-for").value) metadata.expires_in = $("#keep-for").value;
  const upload = new tus.Upload(file, {
    endpoint: "/tus/",
    chunkSize: CHUNK_BYTES,
    retryDelays: [0, 1000, 3000, 5000, 10000],
    headers: uploadHeaders(),
    metadata,
    removeFingerprintOnSuccess: true,
    onProgress(sent, total) {
      if (started === null) {
        started = performance.now();
        startedAt = sent;
      }
      const percent = total ? Math.floor((sent / total) * 100) : 0;
      const seconds = (performance.now() - started) / 1000;
      const rate = seconds > 0 ? (sent - startedAt) / seconds : 0;
      const left = rate > 0 ? (total - sent) / rate : Infinity;
      bar.value = percent;
      entry.sent = sent;
      showBatch();
      state.textContent = `${percent}%` + (rate > 0 ? ` · ${bytes(rate)}/s · ${duration(left)} left` : "");
    },
    onSuccess() {
      bar.value = 100;
      state.textContent = "100% · stored";
      row.classList.add("done");
      entry.sent = file.size;
      ended("stored");
      if (LINK) loadLink();
      else loadFiles();
    },
    async onError(error) {
      // tus-js-client gives up while the browser is offline: continue once it is back.
      if (!navigator.onLine) {
        state.textContent = "Waiting for the network: it continues when you are back online.";
        window.addEventListener("online", () => upload.start(), { once: true });
        return;
      }
      row.classList.add("failed");
      const status = error.originalResponse?.getStatus();
      if (status === 401 && token() && !LINK) {
        await signOutRefused(error.originalResponse.getBody());
        loadFiles();
      }
      const refused = status === 401 && !token() && !LINK;
      state.textContent = refused ? "Not stored: sign in with a token first." : `Not stored: ${await tusErrorText(error)}`;
      ended("failed");
      retry.hidden = false;
    },
  });
  cancel.addEventListener("click", () => {
    upload.abort(true).catch(() => {});
    state.textContent = "Cancelled";
    ended("cancelled");
  });
  // Paused, the upload stays on the server; resumed, it continues from what the server has.
  pause.addEventListener("click", () => {
    const pausing = pause.textContent === "Pause";
    if (pausing) {
      upload.abort(false).catch(() => {});
      state.textContent = `Paused at ${bar.value}%`;
    } else {
      upload.start();
    }
    pause.textContent = pausing ? "Resume" : "Pause";
    pause.setAttribute("aria-label", `${pause.textContent} ${file.name}`);
  });
  retry.addEventListener("click", () => {
    row.classList.remove("failed");
    retry.hidden = true;
    for (const button of [pause, cancel]) button.hidden = false;
    entry.end = null;
    state.textContent = "Retrying…";
    upload.start();
  });
  // A file sent before (same name, size, date) continues where it stopped.
  upload.findPreviousUploads().then((previous) => {
    if (previous.length > 0) upload.resumeFromPreviousUpload(previous[0]);
    upload.start();
  });
}

let cursor = null;
// The largest file the server takes (its tus `Tus-Max-Size`), once asked.
let maxFileBytes = null;

// What may be sent, before anything is picked: the largest file, and the quota left.
function showLimits(quotaLeft) {
  const limits = [];
  if (maxFileBytes) limits.push(`Files up to ${bytes(maxFileBytes)}`);
  if (quotaLeft !== null) limits.push(`${bytes(quotaLeft)} of your quota left`);
  $("#limits").textContent = limits.length ? `${limits.join(" · ")}.` : "";
}

async function loadLimits() {
  const response = await fetch("/tus/", { method: "OPTIONS" });
  maxFileBytes = Number(response.headers.get("Tus-Max-Size")) || null;
}

// How much the caller stores, and of what quota.
async function loadUsage() {
  const usage = $("#usage");
  const response = await fetch("/me", { headers: authHeaders() });
  if (!response.ok) {
    usage.textContent = "";
    showLimits(null);
    return;
  }
  const me = await response.json();
  showLimits(me.quota_bytes === null ? null : Math.max(0, me.quota_bytes - me.used_bytes));
  usage.textContent = me.quota_bytes === null
    ? `Using ${bytes(me.used_bytes)} (no quota).`
    : `Using ${bytes(me.used_bytes)} of ${bytes(me.quota_bytes)} (${bytes(Math.max(0, me.quota_bytes - me.used_bytes))} left).`;
}

async function loadFiles(more = false) {
  const status = $("#files-status");
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (more && cursor) query.set("cursor", cursor);
  const response = await fetch(`/files?${query}`, { headers: authHeaders() });
  const body = await response.text();
  if (!response.ok) {
    $("#files").hidden = true;
    if (response.status === 401 && token()) await signOutRefused(body);
    status.textContent = response.status === 401
      ? "Sign in with a token to see your files."
      : await problemText(response.status, body, response.headers.get("Retry-After"));
    return;
  }
  const page = JSON.parse(body);
  const rows = $("#files tbody");
  if (!more) rows.replaceChildren();
  for (const file of page.files) rows.append(fileRow(file));
  cursor = page.next_cursor;
  $("#more").hidden = !cursor;
  $("#files").hidden = rows.children.length === 0;
  status.textContent = rows.children.length === 0 ? "No files yet." : "";
  loadUsage();
}

function fileRow(file) {
  const row = document.createElement("tr");
  row.dataset.id = file.id;
  const cell = (text) => {
    const td = document.createElement("td");
    td.textContent = text;
    row.append(td);
  };
  cell(file.upload_link ? `${file.filename} (sent through an upload link)` : file.filename);
  cell(bytes(file.size));
  cell(new Date(file.created_at).toLocaleString());
  // A file with a lifetime goes by itself then; the others stay until deleted.
  cell(file.expires_at ? new Date(file.expires_at).toLocaleString() : "when deleted");
  const actions = document.createElement("td");
  actions.className = "actions";
  const button = (label, name, action) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.setAttribute("aria-label", `${label} ${name}`);
    b.addEventListener("click", action);
    actions.append(b, " ");
  };
  button("Download", file.filename, () => download(file));
  button("Share", file.filename, () => share(file));
  button("Delete", file.filename, () => remove(file, row));
  row.append(actions);
  return row;
}

// With a token the browser cannot follow a plain link (it would not send the header): the
// bytes are fetched, then saved under the file's name.
async function download(file) {
  const response = await fetch(file.url, { headers: authHeaders() });
  if (!response.ok) {
    $("#files-status").textContent = await problemText(response.status, await response.text());
    return;
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = file.filename;
  link.click();
  URL.revokeObjectURL(link.href);
}

// A share link: anyone holding it downloads the file without a token, for as long as chosen.
async function share(file) {
  const response = await fetch(`/files/${file.id}/links`, {
    method: "POST",
    headers: { ...authHeaders(), "Content-Type": "application/json" },
    body: JSON.stringify({ expires_in: $("#share-for").value }),
  });
  const body = await response.text();
  if (!response.ok) {
    $("#files-status").textContent = await problemText(response.status, body);
    return;
  }
  const link = JSON.parse(body);
  const until = new Date(link.expires_at).toLocaleString();
  $("#shared-label").textContent = `Anyone with this link can download ${file.filename} until ${until}, without a token:`;
  $("#shared-url").value = new URL(link.url, location.origin).href;
  $("#shared").dataset.link = link.id;
  $("#shared").hidden = false;
  $("#shared-url").select();
  showLinks(file);
}

// Every link of the file: until when, how often downloaded, and a way to revoke it.
async function showLinks(file) {
  const response = await fetch(`/files/${file.id}/links`, { headers: authHeaders() });
  const body = await response.text();
  const list = $("#links");
  if (!response.ok) {
    $("#files-status").textContent = await problemText(response.status, body);
    return;
  }
  list.replaceChildren();
  for (const link of JSON.parse(body)) {
    const item = document.createElement("li");
    const until = link.expires_at ? new Date(link.expires_at).toLocaleString() : "revoked";
    const limit = link.max_downloads === null ? "" : ` of ${link.max_downloads}`;
    const noun = link.downloads === 1 && !limit ? "download" : "downloads";
    item.textContent = `Until ${until} · ${link.downloads}${limit} ${noun} `;
    const revoke = document.createElement("button");
    revoke.type = "button";
    revoke.textContent = "Revoke";
    revoke.setAttribute("aria-label", `Revoke the link made ${new Date(link.created_at).toLocaleString()}`);
    revoke.addEventListener("click", async () => {
      const revoked = await fetch(`/files/${file.id}/links/${link.id}`, { method: "DELETE", headers: authHeaders() });
      // The list first: once the page says it is revoked, the list no longer shows it.
      await showLinks(file);
      $("#files-status").textContent = revoked.ok
        ? "Link revoked: it no longer downloads anything."
        : await problemText(revoked.status, await revoked.text());
      if (revoked.ok && $("#shared").dataset.link === link.id) {
        $("#shared-label").textContent = `That link to ${file.filename} is revoked.`;
        $("#shared-url").value = "";
      }
    });
    item.append(revoke);
    list.append(item);
  }
}

async function remove(file, row) {
  if (!confirm(`Delete ${file.filename}?`)) return;
  const response = await fetch(`/files/${file.id}`, { method: "DELETE", headers: authHeaders() });
  if (response.ok) {
    row.remove();
    $("#files-status").textContent = `${file.filename} deleted.`;
    loadUsage();
  } else {
    $("#files-status").textContent = await problemText(response.status, await response.text());
  }
}

// An upload link: anyone holding it sends the caller files, without a token.
async function requestFiles() {
  const asked = { expires_in: $("#request-for").value };
  const most = $("#request-files").value;
  if (most) asked.max_files = Number(most);
  const response = await fetch("/upload-links", {
    method: "POST",
    headers: { ...authHeaders(), "Content-Type": "application/json" },
    body: JSON.stringify(asked),
  });
  const body = await response.text();
  if (!response.ok) {
    $("#requests-status").textContent = await problemText(response.status, body);
    return;
  }
  const link = JSON.parse(body);
  const until = new Date(link.expires_at).toLocaleString();
  const files = link.max_files === null ? "files" : `up to ${link.max_files} ${link.max_files === 1 ? "file" : "files"}`;
  $("#requested-label").textContent = `Anyone with this link can send you ${files} until ${until}:`;
  $("#requested-url").value = new URL(link.url, location.origin).href;
  $("#requested").dataset.link = link.id;
  $("#requested").hidden = false;
  $("#requested-url").select();
  $("#requests-status").textContent = "";
  await showUploadLinks();
}

// The caller's upload links: until when, how many files came, and a way to revoke each.
async function showUploadLinks() {
  const list = $("#upload-links");
  const response = await fetch("/upload-links", { headers: authHeaders() });
  if (!response.ok) {
    list.replaceChildren();
    return;
  }
  list.replaceChildren();
  for (const link of await response.json()) {
    const item = document.createElement("li");
    const until = link.expires_at ? new Date(link.expires_at).toLocaleString() : "revoked";
    const limit = link.max_files === null ? "" : ` of ${link.max_files}`;
    item.textContent = `Until ${until} · ${link.files}${limit} ${link.files === 1 && !limit ? "file" : "files"} received `;
    const revoke = document.createElement("button");
    revoke.type = "button";
    revoke.textContent = "Revoke";
    revoke.setAttribute("aria-label", `Revoke the upload link made ${new Date(link.created_at).toLocaleString()}`);
    revoke.addEventListener("click", async () => {
      const revoked = await fetch(`/upload-links/${link.id}`, { method: "DELETE", headers: authHeaders() });
      await showUploadLinks();
      $("#requests-status").textContent = revoked.ok
        ? "Upload link revoked: nobody can send files through it any more."
        : await problemText(revoked.status, await revoked.text());
      if (revoked.ok && $("#requested").dataset.link === link.id) {
        $("#requested-label").textContent = "That upload link is revoked.";
        $("#requested-url").value = "";
      }
    });
    item.append(revoke);
    list.append(item);
  }
}

// A visitor's page: what the link takes, or why it takes nothing.
async function loadLink() {
  const response = await fetch(location.pathname, { headers: { Accept: "application/json" } });
  const body = await response.text();
  const said = $("#visitor");
  if (!response.ok) {
    said.textContent = `This upload link takes no files: ${await problemText(response.status, body)}.`;
    $("#drop").hidden = true;
    return;
  }
  const link = JSON.parse(body);
  maxFileBytes = link.max_file_bytes;
  const limits = [`Files up to ${bytes(link.max_file_bytes)}`];
  if (link.files_left !== null) limits.push(`${link.files_left} more ${link.files_left === 1 ? "file" : "files"}`);
  if (link.allowed_content_types.length) limits.push(`of types ${link.allowed_content_types.join(", ")}`);
  if (link.expires_at) limits.push(`until ${new Date(link.expires_at).toLocaleString()}`);
  $("#limits").textContent = `${limits.join(" · ")}.`;
  said.textContent = "Files you send here go to the person who gave you this link. You need no token.";
  $("#drop").hidden = link.files_left === 0;
}

// Who is signed in, or why nobody is.
function showSignedIn(said) {
  $("#sign-out").hidden = !token();
  $("#token").value = "";
  $("#token").placeholder = token() ? "signed in" : "intake_…";
  if (said !== undefined) $("#who").textContent = said;
}

// The token was revoked or expired since it was accepted: the page signs out, and says why.
async function signOutRefused(body) {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignedIn(`Signed out: ${await problemText(401, body)}. Sign in again.`);
}

// A token is kept only once the server has accepted it (`/me` says whose it is).
async function signIn(candidate) {
  const response = await fetch("/me", { headers: { Authorization: `Bearer ${candidate}` } });
  const body = await response.text();
  if (!response.ok) {
    showSignedIn(`Not signed in: ${await problemText(response.status, body)}.`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  showSignedIn(`Signed in as ${JSON.parse(body).name}.`);
  loadFiles();
  showUploadLinks();
}

// A button that copies a link's URL, and says so in `status`.
function copies(button, url, status) {
  $(button).addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($(url).value);
      $(status).textContent = "Link copied.";
    } catch (_) {
      $(url).select();
      $(status).textContent = "Select the link and copy it.";
    }
  });
}

// At an upload link's URL: only the sending, for a visitor without a token.
function startVisitorPage() {
  for (const owned of ["#sign-in", "#requests", "#yours"]) $(owned).hidden = true;
  $("#visitor").hidden = false;
  $("#send-title").textContent = "Send files through this link";
  loadLink();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("#token").value.trim());
  });
  $("#sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignedIn("Signed out.");
    loadFiles();
  });
  copies("#copy-shared", "#shared-url", "#files-status");
  $("#pick").addEventListener("change", (event) => {
    for (const file of event.target.files) send(file);
    event.target.value = "";
  });
  const drop = $("#drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    for (const file of event.dataTransfer.files) send(file);
  });
  $("#more").addEventListener("click", () => loadFiles(true));
  $("#clear").addEventListener("click", clearFinished);
  $("#request").addEventListener("submit", (event) => {
    event.preventDefault();
    requestFiles();
  });
  copies("#copy-requested", "#requested-url", "#requests-status");
  if (LINK) {
    startVisitorPage();
    return;
  }
  showSignedIn();
  loadLimits().finally(() => loadFiles());
  showUploadLinks();
});
