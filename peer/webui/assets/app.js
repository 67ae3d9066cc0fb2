// The peer daemon's page: it talks to the control API under /v1/ (JSON, and
// newline-delimited JSON events for search and get) with the session cookie.
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, props = {}, ...kids) => {
  const e = document.createElement(tag);
  Object.assign(e, props);
  for (const k of kids) e.append(k);
  return e;
};

function bytes(n) {
  if (n < 1024) return n + " B";
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let u = -1;
  do { n /= 1024; u++; } while (n >= 1024 && u < units.length - 1);
  return n.toFixed(n < 10 ? 1 : 0) + " " + units[u];
}

function ago(t) {
  const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
  if (s < 60) return Math.round(s) + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}

// post sends JSON and returns the parsed answer, or throws its error.
async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}

// events posts and calls onEvent with each line of the streamed answer.
async function events(path, body, onEvent) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (!r.ok) {
    const j = await r.json().catch(() => ({}));
    throw new Error(j.error || r.statusText);
  }
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) onEvent(JSON.parse(line));
    }
  }
}

// Tabs.
function show(tab) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("active", s.id === tab));
  if (tab === "inbox") loadInbox();
  if (tab === "status") loadStatus();
}
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => show(b.dataset.tab)));

// Search: hits arrive as each supernode answers; one row per content ID,
// with every source found.
$("#search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("#query").value.trim();
  if (!q) return;
  const rows = new Map();
  const tbody = $("#results tbody");
  tbody.replaceChildren();
  $("#results").hidden = true;
  $("#search-note").textContent = "Searching…";
  $("#search-note").className = "muted";
  try {
    await events("/v1/search", { query: q }, (e) => {
      if (e.hits) {
        for (const h of e.hits) addHit(rows, tbody, h);
        $("#results").hidden = rows.size === 0;
      }
      if (e.done) {
        $("#search-note").textContent = `${rows.size} result${rows.size === 1 ? "" : "s"} from ${e.done.supernodes} supernode${e.done.supernodes === 1 ? "" : "s"}` + (e.done.partial ? " (some did not answer)" : "");
      }
      if (e.error) throw new Error(e.error.error);
    });
  } catch (err) {
    $("#search-note").textContent = err.message;
    $("#search-note").className = "error";
  }
});

function addHit(rows, tbody, h) {
  let r = rows.get(h.content_id);
  if (!r) {
    const name = el("td", {}, h.name);
    if (h.tags && (h.tags.Title || h.tags.Artist)) {
      name.append(el("div", { className: "tags" }, [h.tags.Artist, h.tags.Title, h.tags.Album].filter(Boolean).join(" · ")));
    }
    const sources = el("td", { className: "num" });
    const btn = el("button", { className: "plain", textContent: "Download" });
    btn.addEventListener("click", () => { btn.disabled = true; download(h.content_id, h.name); show("downloads"); });
    const tr = el("tr", {}, name, el("td", { className: "num" }, bytes(h.size)), sources, el("td", {}, btn));
    tr.dataset.cid = h.content_id;
    r = { tr, sources, peers: new Set() };
    rows.set(h.content_id, r);
    tbody.append(tr);
  }
  for (const s of h.sources || []) r.peers.add(s.peer_id);
  r.sources.textContent = r.peers.size;
}

// Downloads: each runs as a streamed get whose events move its bar.
const downloads = new Map();

function download(cid, name) {
  let d = downloads.get(cid);
  if (d && d.state !== "failed") return;
  const bar = el("div");
  const title = el("strong", {}, name);
  const state = el("span", { className: "muted" }, "locating");
  const figures = el("span", { className: "muted" });
  const box = el("div", { className: "dl" }, el("div", { className: "line" }, title, state), el("div", { className: "bar" }, bar), figures);
  box.dataset.cid = cid;
  $("#dl-list").prepend(box);
  $("#dl-empty").hidden = true;
  d = { box, bar, state: "locating" };
  downloads.set(cid, d);
  updateCount();
  const render = (p) => {
    d.state = p.state;
    box.className = "dl " + p.state;
    box.dataset.state = p.state;
    state.textContent = p.state;
    const pct = p.size > 0 ? (100 * p.verified_bytes) / p.size : 0;
    bar.style.width = (p.state === "done" ? 100 : pct).toFixed(1) + "%";
    let t = `${bytes(p.verified_bytes || 0)} of ${bytes(p.size || 0)}`;
    if (p.state === "downloading") t += ` · ${bytes(Math.round(p.rate_bytes_per_sec || 0))}/s · ${p.active_sources} of ${p.sources} peers`;
    if (p.state === "done") t += ` · saved ${p.path}`;
    if (p.error) t += " · " + p.error;
    figures.textContent = t;
    updateCount();
  };
  events("/v1/get", { content_id: cid }, (e) => {
    if (e.progress) render(e.progress);
    if (e.error) render({ state: "failed", error: e.error.error, verified_bytes: 0, size: 0 });
  }).catch((err) => render({ state: "failed", error: err.message, verified_bytes: 0, size: 0 }));
}

function updateCount() {
  let n = 0;
  for (const d of downloads.values()) if (d.state !== "done" && d.state !== "failed") n++;
  $("#dl-count").textContent = n ? n : "";
}

// Inbox: open in the browser, save, delete.
async function loadInbox() {
  try {
    const r = await fetch("/v1/inbox");
    const list = await r.json();
    const files = list.files || [];
    $("#inbox-count").textContent = files.length ? files.length : "";
    $("#inbox-note").textContent = files.length ? `${files.length} file${files.length === 1 ? "" : "s"} in ${list.dir}` : `Nothing has arrived in ${list.dir}.`;
    $("#inbox-table").hidden = files.length === 0;
    const tbody = $("#inbox-table tbody");
    tbody.replaceChildren();
    for (const f of files) {
      const url = "/web/inbox/" + encodeURIComponent(f.name);
      const open = el("a", { href: url, target: "_blank", rel: "noopener", textContent: "Open" });
      const save = el("a", { href: url + "?save", textContent: "Save" });
      const del = el("button", { className: "plain", textContent: "Delete" });
      del.addEventListener("click", async () => {
        if (!confirm(`Delete ${f.name} from the inbox?`)) return;
        try { await post("/v1/inbox/rm", { names: [f.name] }); } catch (err) { alert(err.message); }
        loadInbox();
      });
      const from = f.from_user ? `${f.from_user} (${f.from_peer.slice(0, 10)})` : f.from_peer.slice(0, 10);
      tbody.append(el("tr", {}, el("td", {}, f.name), el("td", { className: "num" }, bytes(f.size)), el("td", {}, from),
        el("td", {}, new Date(f.at).toLocaleString()), el("td", {}, open, " ", save, " ", del)));
    }
  } catch (err) {
    $("#inbox-note").textContent = err.message;
  }
}

// Send: the file goes up to the daemon, which hands it to the user's inbox.
$("#send-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const note = $("#send-note");
  note.className = "muted";
  note.textContent = "Sending…";
  const r = await fetch("/web/send", { method: "POST", body: new FormData(ev.target) });
  const text = await r.text();
  if (!r.ok) {
    note.className = "error";
    note.textContent = text.trim();
    return;
  }
  const res = JSON.parse(text);
  note.textContent = `Sent to ${res.user}: stored as "${res.stored_as}" (${res.path}).`;
  ev.target.reset();
});

// Status: who we are, our supernodes and NAT, links.
async function loadStatus() {
  const st = await (await fetch("/v1/status")).json();
  $("#me").textContent = (st.name ? st.name + " · " : "") + st.peer_id.slice(0, 10);
  const dl = $("#status-list");
  dl.replaceChildren();
  const row = (k, v) => dl.append(el("dt", {}, k), el("dd", {}, v));
  row("Peer ID", st.peer_id);
  if (st.user) row("Username", st.user.name + (st.user.registered ? " (registered)" : ""));
  for (const sn of st.supernodes || [st.supernode]) {
    row("Supernode", `${sn.addr} ${sn.peer_id ? "(" + sn.peer_id.slice(0, 10) + ")" : ""} ${sn.connected ? "attached " + ago(sn.since) + " ago" : "not attached"}`);
  }
  row("NAT", (st.supernode.nat || "unknown") + (st.supernode.observed_addr ? ", seen as " + st.supernode.observed_addr : ""));
  if ((st.supernode.proven_addrs || []).length) row("Also seen at", st.supernode.proven_addrs.join(", "));
  if (st.supernode.relay) row("Relay", st.supernode.relay);
  row("Sharing", `${(st.shared || []).length} files, ${bytes(st.shared_bytes || 0)}`);
  row("Transferred", `${bytes(st.uploaded_bytes || 0)} up, ${bytes(st.downloaded_bytes || 0)} down`);
  const tbody = $("#links tbody");
  tbody.replaceChildren();
  for (const l of st.links || []) {
    tbody.append(el("tr", {}, el("td", {}, l.peer_id.slice(0, 10)), el("td", {}, l.path), el("td", {}, l.plan || ""), el("td", {}, l.remote_addr)));
  }
}

loadStatus();
loadInbox();
document.body.dataset.ready = "1";
setInterval(() => { if ($("#status").classList.contains("active")) loadStatus(); }, 3000);
