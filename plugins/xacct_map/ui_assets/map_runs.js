// The Map runs page (xacct_map/ui.py): draws the runs from the plugin's JSON and polls it, no reload.
// Shipped in the package (no CDN); builds the DOM with textContent, so no value is ever parsed as HTML
// (the detail view's chart is SVG the server drew from numbers).
(function () {
  "use strict";
  const config = JSON.parse(document.body.dataset.config);
  const content = document.getElementById("content");
  const status = document.getElementById("status");
  const PARTS = ["succeeded", "failed", "running", "pending"];
  const IN_FLIGHT = ["running", "deferred", "up_for_reschedule", "restarting", "queued", "scheduled"];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    let s = Math.round(value);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    return h ? `${h}h ${m}m ${s}s` : m ? `${m}m ${s}s` : `${s}s`;
  }

  function bar(run) {
    if (run.total === undefined) return el("div", { class: "bar empty" }, run.task_state === "deferred" || run.task_state === "running" ? "starting…" : "no Map Run yet");
    const node = el("div", {
      class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": run.total,
      "aria-valuenow": run.done, "data-done": run.done, "data-total": run.total,
    });
    for (const part of PARTS) {
      const n = run[part] || 0;
      if (!run.total || !n) continue;
      const span = el("span", { class: `part ${part}`, title: `${n} ${part}` });
      span.style.width = `${(100 * n) / run.total}%`;
      node.appendChild(span);
    }
    return node;
  }

  function counts(run) {
    if (run.total === undefined) return "";
    const pct = run.percent === null ? "" : ` (${run.percent}%)`;
    return `${run.done} / ${run.total}${pct} · ${PARTS.map((p) => `${run[p]} ${p}`).join(", ")}`;
  }

  function speed(run) {
    const bits = [];
    if (run.items_per_second) bits.push(`${run.items_per_second.toFixed(2)} items/s`);
    if (run.eta_seconds !== null && run.eta_seconds !== undefined) bits.push(`ETA ${seconds(run.eta_seconds)}`);
    return bits.join(" · ");
  }

  function links(run) {
    const names = { execution: "Execution", map_run: "Map Run", manifest: "Manifest" };
    const node = el("span", { class: "links" });
    for (const [key, label] of Object.entries(names)) {
      const url = (run.links || {})[key];
      if (url) node.appendChild(el("a", { href: url, target: "_blank", rel: "noopener noreferrer", class: `link-${key}` }, label));
    }
    return node;
  }

  function problem(run) {
    const node = el("div", { class: "problem" });
    if (run.error || run.cause) node.appendChild(el("div", { class: "error" }, [run.error, run.cause].filter(Boolean).join(": ")));
    for (const child of run.failed_children || []) {
      const keys = (child.keys || []).join(", ");
      node.appendChild(el("div", { class: "failed-child" }, `${child.error || "failed"}${keys ? ` — keys: ${keys}` : ""}`));
    }
    if (run.live_error) node.appendChild(el("div", { class: "muted" }, `live look failed: ${run.live_error}`));
    return node.childNodes.length ? node : null;
  }

  function detailUrl(run) {
    return `${config.base}/dags/${encodeURIComponent(run.dag_id)}/runs/${encodeURIComponent(run.run_id)}`;
  }

  // Pinned runs (on_changed): objects changed or deleted since the listing, as the sensor counted them.
  function changes(run) {
    return run.changed === undefined || run.changed === null ? "" : `${run.changed} changed, ${run.gone || 0} gone since listing`;
  }

  function listView(data) {
    const head = el("tr", {}, ...["DAG run", "State", "Progress", "Speed", "Duration", "Links"].map((h) => el("th", {}, h)));
    const body = el("tbody");
    for (const run of data.runs) {
      const progressCell = el("td", { class: "progress" }, bar(run), el("div", { class: "counts" }, counts(run)), problem(run));
      body.appendChild(el("tr", { class: run.task_state, "data-run-id": run.run_id, "data-status": run.status || "", "data-source": run.source || "" },
        el("td", {}, el("a", { href: detailUrl(run) }, run.run_id), el("div", { class: "muted" }, run.dag_id)),
        el("td", {}, el("span", { class: "badge" }, run.status || run.task_state), el("div", { class: "muted" }, run.source === "live" ? "live" : ""), el("div", { class: "muted changed" }, changes(run))),
        progressCell,
        el("td", { class: "speed" }, speed(run)),
        el("td", { class: "n duration" }, seconds(run.duration_seconds)),
        el("td", {}, links(run))));
    }
    if (!data.runs.length) body.appendChild(el("tr", {}, el("td", { colspan: 6 }, "No Distributed Map runs yet.")));
    return el("table", { id: "map-runs" }, el("thead", {}, head), body);
  }

  function detailView(data) {
    const run = data.run;
    const chart = el("div", { class: "chart-box", id: "chart" });
    chart.innerHTML = data.chart_svg; // drawn by the server from numbers only
    const facts = el("dl", { class: "facts" });
    const add = (k, v) => { facts.appendChild(el("dt", {}, k)); facts.appendChild(el("dd", {}, v || "–")); };
    add("State", `${run.status || "–"} (task ${run.task_state})`);
    add("Items", counts(run));
    if (run.changed !== undefined) add("Changed since listing", changes(run));
    add("Speed", speed(run));
    add("Duration", seconds(run.duration_seconds));
    add("Execution", run.execution_arn);
    add("Map Run", run.map_run_arn);
    return el("div", { id: "map-run", "data-run-id": run.run_id, "data-status": run.status || "" },
      el("p", {}, el("a", { href: `${config.base}/` }, "← all Map runs")),
      bar(run), facts, links(run), problem(run),
      el("h3", {}, "Items done over time"), chart);
  }

  function inFlight(data) {
    const runs = data.runs || [data.run];
    return runs.some((r) => IN_FLIGHT.includes(r.task_state));
  }

  async function refresh() {
    let wait = 30;
    try {
      const response = await fetch(config.json, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      const data = await response.json();
      content.replaceChildren(config.view === "detail" ? detailView(data) : listView(data));
      wait = inFlight(data) ? data.refresh_seconds : Math.max(data.refresh_seconds, 30);
      status.textContent = `Updated ${new Date().toLocaleTimeString()}; next in ${Math.round(wait)} s.`;
    } catch (err) {
      status.textContent = `Could not load the runs: ${err.message}. Retrying in ${wait} s.`;
    }
    setTimeout(refresh, wait * 1000);
  }

  refresh();
})();
