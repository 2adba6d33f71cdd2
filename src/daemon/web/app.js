// drover's web interface: polls the daemon's own API and redraws; no framework, no build step.
// Everything shown goes through textContent, never innerHTML: labels and names come from
// manifests and logs and must not become markup.
"use strict";

const REFRESH_MS = 2000;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c === undefined || c === null ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function fill(id, rows, empty) {
  const body = document.getElementById(id);
  body.replaceChildren(...rows);
  if (rows.length === 0) body.appendChild(row([empty || "none"], "muted"));
  hideEmptyColumns(id);
}

function state(ok, yes, no) {
  return el("span", ok ? yes : no, ok ? "ok" : "bad");
}

function labels(map) {
  return Object.entries(map || {}).map(([k, v]) => k + "=" + v).join(",");
}

function bytes(n) {
  if (!n) return "0";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function used(u, cap, fmt) {
  return fmt(u || 0) + " / " + (cap === undefined || cap === null ? "unlimited" : fmt(cap));
}

// "43s ago", "5m ago", "2h ago", "3d ago" from Unix seconds (the daemon's clock is the host's).
function ago(unixSeconds) {
  if (!unixSeconds) return "";
  const s = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
  if (s < 90) return s + "s ago";
  if (s < 90 * 60) return Math.round(s / 60) + "m ago";
  if (s < 36 * 3600) return Math.round(s / 3600) + "h ago";
  return Math.round(s / 86400) + "d ago";
}

function unixOf(rfc3339) {
  const t = Date.parse(rfc3339 || "");
  return isNaN(t) ? 0 : t / 1000;
}

// Hides the columns of a table that no row fills (an explicit pod has no controller, a pod
// without a network namespace of its own no IP): no empty columns.
function hideEmptyColumns(bodyId) {
  const body = document.getElementById(bodyId);
  const table = body.closest("table");
  const heads = table.querySelectorAll("thead th");
  const rows = Array.from(body.rows).filter(r => r.cells.length === heads.length);
  heads.forEach((th, i) => {
    const empty = rows.length > 0 && rows.every(r => r.cells[i].textContent.trim() === "");
    th.classList.toggle("hidden-col", empty);
    for (const r of rows) r.cells[i].classList.toggle("hidden-col", empty);
  });
}

function containerText(c) {
  let s = c.name + ": " + c.state;
  if (c.exitCode !== undefined) s += " (exit " + c.exitCode + ")";
  return s;
}

function draw(status) {
  document.getElementById("project").textContent = status.project || "-";
  document.getElementById("source").textContent = status.source || "-";
  document.getElementById("commit").textContent = status.commit ? status.commit.slice(0, 12) : "-";
  // Several daemons on one etcd: who leads (only the leader acts; every one serves the proxy).
  document.getElementById("leading").hidden = !status.role;
  document.getElementById("leader").textContent = status.role === "leader" ? "this daemon" :
    status.leader ? status.leader.who + (status.leader.status ? " (" + status.leader.status + ")" : "") : "none";
  const round = status.lastRound || {};
  document.getElementById("round").textContent = round.number === undefined ? "-" : "#" + round.number;
  document.getElementById("round-at").textContent = round.at || "";
  document.getElementById("converged").replaceChildren(
    round.number === undefined ? el("span") : state(round.converged, "converged", "working"));
  const banner = document.getElementById("banner");
  if (status.sourceInvalid) {
    banner.textContent = "Source invalid since " + status.sourceInvalid.since + ": " +
      status.sourceInvalid.error + " (the last valid state stays in force)";
    banner.style.display = "block";
  } else {
    banner.style.display = "none";
  }

  fill("minions", (status.minions || []).map(m => row([
    m.name,
    m.unschedulable
      ? el("span", (m.ready ? "Ready" : "NotReady") + (m.draining ? ", draining" : ", SchedulingDisabled"), m.ready ? "" : "bad")
      : state(m.ready, "Ready", "NotReady"),
    m.pods,
    used(m.used && m.used.cpu, m.capacity && m.capacity.cpu, n => n + "m"),
    used(m.used && m.used.memory, m.capacity && m.capacity.memory, bytes),
  ])), "no minions");

  drawControllers(status);

  const waiting = (status.waiting || []).map(w => row([
    "-", w.id, el("span", w.reason, "bad"), w.replicationController || "", "",
    w.message + " (failure " + w.failures + ", next try in " + w.retryInSeconds + "s)",
  ]));
  fill("pods", waiting.concat((status.pods || []).map(p => {
    const tr = row([
      p.minion, p.id,
      el("span", p.phase, p.phase === "Running" ? "ok" : p.phase === "Failed" ? "bad" : "warn"),
      p.replicationController || "", p.ip || "",
      (p.containers || []).map(containerText).join("; "),
    ], "pod");
    tr.dataset.minion = p.minion;
    tr.dataset.pod = p.id;
    tr.addEventListener("click", () => showLog(p.minion, p.id));
    return tr;
  })), "no pods");

  fill("services", (status.services || []).map(s => row([
    s.name,
    s.port + "/" + s.protocol,
    s.error ? el("span", s.error, "bad") : (s.listening || "-"),
    (s.endpoints || []).map(e => e.address + (e.ready === false ? " (not ready)" : "")).join(", ") || "none",
  ])), "no services");
}

// The last events seen, for the controllers' cards (crash loops are told by Docker's events).
let lastEvents = [];
let lastStatus = null;

function drawEvents(events) {
  lastEvents = events;
  fill("events", events.slice(-50).reverse().map(e => {
    const seen = e.lastSeen || unixOf(e.lastTimestamp);
    const when = el("span", ago(seen));
    when.title = e.lastTimestamp || "";
    const first = el("span", e.count > 1 ? ago(unixOf(e.firstTimestamp)) : "");
    first.title = e.firstTimestamp || "";
    const tr = row([
      when,
      el("span", e.type || "", e.type === "Warning" ? "warn" : "muted"),
      (e.involvedObject ? e.involvedObject.kind + "/" + e.involvedObject.name : ""),
      e.reason, e.message, e.count, first,
    ]);
    tr.cells[0].className = "when";
    tr.cells[4].className = "message";
    tr.cells[6].className = "when";
    return tr;
  }), "no events");
  if (lastStatus) drawControllers(lastStatus);
}

// A card per replication controller: images, desired / current / ready, a rollout's progress,
// and what holds it back: a back-off (reason, message, next try) or a crash loop.
function drawControllers(status) {
  lastStatus = status;
  const cards = (status.replicationControllers || []).map(rc => {
    const card = el("div", null, "card");
    card.dataset.rc = rc.id;
    const title = el("h3");
    title.appendChild(el("span", rc.id));
    title.appendChild(el("span", labels(rc.selector), "muted"));
    card.appendChild(title);
    card.appendChild(el("div", (rc.images || []).join(", "), "images"));
    const counts = el("div", null, "counts");
    for (const [n, what] of [[rc.desired, "desired"], [rc.current, "current"], [rc.ready, "ready"]]) {
      const c = el("div");
      c.appendChild(el("b", n === undefined ? "-" : n));
      c.appendChild(el("span", what));
      c.dataset.count = what;
      counts.appendChild(c);
    }
    card.appendChild(counts);
    let trouble = "";
    // Replicas of an older template still there: a rolling update under way.
    if (rc.updated !== undefined && rc.current > rc.updated) {
      const bar = el("div", null, "progress");
      const fillBar = el("div");
      fillBar.style.width = Math.min(100, 100 * rc.updated / Math.max(1, rc.desired)) + "%";
      bar.appendChild(fillBar);
      card.appendChild(bar);
      card.appendChild(el("div", "rolling out: " + rc.updated + " of " + rc.desired + " updated", "muted rollout"));
      trouble = "card-warn";
    }
    for (const w of rc.waiting || []) {
      card.appendChild(el("div", w.reason + ": " + w.message + " (failure " + w.failures +
        ", next try in " + w.retryInSeconds + "s)", "problem backoff"));
      trouble = "card-bad";
    }
    // A crash loop: a replica Docker restarted again and again in the last ten minutes.
    const replicas = new Set((status.pods || []).filter(p => p.replicationController === rc.id).map(p => p.id));
    for (const e of lastEvents) {
      const o = e.involvedObject || {};
      const recent = Date.now() / 1000 - (e.lastSeen || 0) < 600;
      if (o.kind === "Pod" && replicas.has(o.name) && e.reason === "Restarted" && e.count >= 2 && recent) {
        card.appendChild(el("div", "CrashLoopBackOff: " + o.name + " restarted " + e.count +
          " times, last " + ago(e.lastSeen), "problem crashloop"));
        trouble = "card-bad";
      }
    }
    if (trouble) card.classList.add(trouble);
    return card;
  });
  const box = document.getElementById("rcs");
  box.replaceChildren(...cards);
  if (cards.length === 0) box.appendChild(el("div", "no replication controllers", "muted"));
}

async function refresh() {
  try {
    const r = await fetch("/status", { cache: "no-store" });
    draw(await r.json());
    const ev = await fetch("/events", { cache: "no-store" });
    if (ev.ok) drawEvents((await ev.json()).items || []);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("updated").textContent = "cannot reach the daemon: " + e;
  }
}

async function showLog(minion, pod) {
  document.getElementById("log-of").textContent = pod + " on " + minion;
  const log = document.getElementById("log");
  log.textContent = "loading…";
  const q = new URLSearchParams({ minion, pod });
  try {
    const r = await fetch("/logs?" + q.toString(), { cache: "no-store" });
    log.textContent = (await r.text()) || "(empty)";
  } catch (e) {
    log.textContent = "cannot fetch the log: " + e;
  }
}

document.getElementById("reconcile").addEventListener("click", async () => {
  const said = document.getElementById("reconcile-said");
  try {
    const r = await fetch("/reconcile", { method: "POST" });
    said.textContent = r.ok ? "round requested" : "refused: " + r.status;
  } catch (e) {
    said.textContent = "failed: " + e;
  }
  refresh();
});

refresh();
setInterval(refresh, REFRESH_MS);
