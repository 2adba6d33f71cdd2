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
    state(m.ready, "Ready", "NotReady"),
    m.pods,
    used(m.used && m.used.cpu, m.capacity && m.capacity.cpu, n => n + "m"),
    used(m.used && m.used.memory, m.capacity && m.capacity.memory, bytes),
  ])), "no minions");

  fill("rcs", (status.replicationControllers || []).map(rc => row([
    rc.id, rc.desired, rc.current, rc.running, labels(rc.selector),
  ])), "no replication controllers");

  const waiting = (status.waiting || []).map(w => row([
    "-", w.id, el("span", w.reason, "bad"), "", "",
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

function drawEvents(events) {
  fill("events", events.slice(-50).reverse().map(e => row([
    e.lastTimestamp || e.firstTimestamp || "",
    (e.involvedObject ? e.involvedObject.kind + "/" + e.involvedObject.name : ""),
    e.reason, e.count, e.message,
  ])), "no events");
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
