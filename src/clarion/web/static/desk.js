// The desk's two live behaviours (what htmx would do here; see clarion/web/desk.py for why
// it is not htmx). Every page works without this script.
"use strict";

function csrfOf(form) {
  const input = form.querySelector('input[name="csrf"]');
  return input ? input.value : "";
}

// 1. Live status: one server-sent event stream; on "change", re-fetch the live panel and
//    swap it in; each "notice" event is listed under "Arriving now".
function liveStatus() {
  const panel = document.getElementById("live");
  if (!panel || !window.EventSource) return;
  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const resp = await fetch(panel.dataset.live, { credentials: "same-origin" });
      if (resp.status === 401) { window.location.reload(); return; }
      if (resp.ok) {
        panel.innerHTML = await resp.text();
        panel.dataset.refreshed = String(Number(panel.dataset.refreshed || 0) + 1);
      }
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  const source = new EventSource(panel.dataset.events);
  source.addEventListener("change", refresh);
  source.addEventListener("notice", (event) => {
    const n = JSON.parse(event.data);
    const list = document.getElementById("arrivals");
    const empty = document.getElementById("arrivals-empty");
    if (empty) empty.remove();
    const item = document.createElement("li");
    item.className = "new";
    const link = document.createElement("a");
    link.href = "/desk/threads/" + n.thread;
    link.textContent = (n.status !== "actual" ? "[" + n.status.toUpperCase() + "] " : "") + n.headline;
    item.append(new Date().toLocaleTimeString() + " ", link);
    list.prepend(item);
    while (list.children.length > 10) list.lastElementChild.remove();
  });
}

// 2. Compose: the previews follow the form as it is edited (debounced), and the page turns
//    test-striped the moment Test or Exercise is chosen.
function composePreview() {
  const form = document.getElementById("compose");
  const target = document.getElementById("preview-body");
  if (!form || !target) return;
  let timer = null;
  let seq = 0;
  async function update() {
    const mine = ++seq;
    const data = new FormData(form);
    data.delete("intent");
    const resp = await fetch(form.dataset.preview, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfOf(form) },
    });
    if (mine !== seq || !resp.ok) return; // a newer edit is on its way
    target.innerHTML = await resp.text();
    target.dataset.updated = String(mine);
    const verdict = target.querySelector(".verdict");
    const submit = document.getElementById("submit");
    if (verdict && submit) submit.textContent = verdict.dataset.submitLabel;
  }
  function changed(event) {
    if (event.target.name === "status") {
      const drill = event.target.value !== "actual";
      document.body.classList.toggle("drill", drill);
    }
    clearTimeout(timer);
    timer = setTimeout(update, 300);
  }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
}

document.addEventListener("DOMContentLoaded", () => {
  liveStatus();
  composePreview();
});
