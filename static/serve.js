// backfill serve: keeps the page up to date from the JSON API every two seconds, and sends the
// controls with the token as an Authorization header (never a cookie or the URL). Values are
// written with textContent, so nothing from the database is ever read as HTML.
"use strict";

function fill(card, job) {
  const set = (field, text) => {
    const el = card.querySelector('[data-field="' + field + '"]');
    if (el) el.textContent = text;
  };
  const d = job.display;
  set("status", job.status);
  set("rows_done", job.rows_done);
  set("total_estimate", job.total_estimate);
  for (const field of ["rate", "eta", "crew", "reason", "heap"]) set(field, d[field]);
  set("failures", job.failures);
  const bar = card.querySelector('[data-field="bar"]');
  if (bar) bar.style.width = d.bar + "%";
}

// The ranges table, rebuilt from the server's words for each range, cell by cell as text.
function ranges(lines) {
  const table = document.getElementById("ranges");
  for (const row of table.querySelectorAll("tr.range")) row.remove();
  for (const cells of lines) {
    const tr = document.createElement("tr");
    tr.className = "range";
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    table.appendChild(tr);
  }
}

async function refresh() {
  const page = document.body.dataset.page;
  const url = page === "job"
    ? "/api/jobs/" + encodeURIComponent(document.body.dataset.name)
    : "/api/jobs";
  try {
    const answer = await fetch(url, { cache: "no-store" });
    if (!answer.ok) return;
    const body = await answer.json();
    const jobs = Array.isArray(body) ? body : [body];
    if (page === "job") {
      document.getElementById("chart").setAttribute("points", body.chart.points);
      document.getElementById("top-rate").textContent = body.chart.top;
      ranges(body.display_ranges);
    }
    for (const job of jobs) {
      for (const card of document.querySelectorAll(".job")) {
        if (card.dataset.job === job.name) fill(card, job);
      }
    }
  } catch (e) {
    // The server restarts or the network drops: the next tick tries again.
  }
}

async function control(button) {
  const token = document.getElementById("token");
  const answer = document.getElementById("answer");
  sessionStorage.setItem("backfill-token", token.value);
  const url = "/api/jobs/" + encodeURIComponent(button.dataset.for) + "/" + button.dataset.control;
  const reply = await fetch(url, {
    method: "POST",
    headers: { Authorization: "Bearer " + token.value },
  });
  const body = await reply.json().catch(() => ({}));
  answer.textContent = reply.ok ? body.message : (body.error || reply.statusText);
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  const token = document.getElementById("token");
  if (token) token.value = sessionStorage.getItem("backfill-token") || "";
  for (const button of document.querySelectorAll("button[data-control]")) {
    button.addEventListener("click", () => control(button));
  }
  setInterval(refresh, Number(document.body.dataset.every) || 2000);
});
