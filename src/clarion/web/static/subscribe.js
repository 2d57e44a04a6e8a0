// The subscribe form's script (the only script on the public page): browser notifications
// (a service worker and a Web Push subscription to this server's key) and "use my location".
// Without it the form still subscribes by e-mail.
(function () {
  "use strict";
  const form = document.getElementById("subscribe");
  const box = document.getElementById("push");
  const out = document.getElementById("push-result");
  const locate = document.getElementById("locate");
  if (!form) return;
  if (locate && "geolocation" in navigator) {
    locate.hidden = false;
    locate.addEventListener("click", () => {
      navigator.geolocation.getCurrentPosition((p) => {
        form.elements.lat.value = p.coords.latitude.toFixed(4);
        form.elements.lon.value = p.coords.longitude.toFixed(4);
      }, (e) => { out.textContent = e.message; });
    });
  }
  // A click on the map of our areas chooses the point (the map's projection is in its data).
  const map = document.querySelector("svg.pick");
  if (map) {
    map.addEventListener("click", (e) => {
      const p = map.createSVGPoint();
      p.x = e.clientX; p.y = e.clientY;
      const at = p.matrixTransform(map.getScreenCTM().inverse());
      const d = map.dataset;
      const lon = Number(d.west) + (at.x - Number(d.offx)) / (Number(d.kx) * Number(d.scale));
      const lat = Number(d.north) - (at.y - Number(d.offy)) / Number(d.scale);
      form.elements.lat.value = lat.toFixed(4);
      form.elements.lon.value = lon.toFixed(4);
      const dot = document.getElementById("picked");
      dot.setAttribute("cx", at.x); dot.setAttribute("cy", at.y);
    });
  }
  if (!box || !("serviceWorker" in navigator) || !("PushManager" in window)) return;
  box.hidden = false;
  const list = (v) => (v || "").split(/[,;\n]+/).map((s) => s.trim()).filter(Boolean);
  function interests() {
    const f = new FormData(form);
    const i = {
      areas: list(f.get("areas")).flatMap((a) => a.split(/\s+/)),
      places: list(f.get("places")),
      routes: list(f.get("routes")),
      stops: list(f.get("stops")),
      components: list(f.get("components")),
    };
    const langs = list(f.get("languages")).flatMap((x) => x.split(/\s+/));
    if (langs.length) i.languages = langs;
    const lat = f.get("lat"), lon = f.get("lon");
    if (lat && lon) i.point = [Number(lat), Number(lon)];
    const sources = f.getAll("sources").filter(Boolean);
    if (sources.length) i.sources = sources;
    if (f.get("min_severity")) i.min_severity = f.get("min_severity");
    return i;
  }
  function key(b64) {
    const s = atob((b64 + "===".slice((b64.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(s, (c) => c.charCodeAt(0));
  }
  function say(text, link) {
    out.textContent = text + (link ? " " : "");
    if (link) {
      const a = document.createElement("a");
      a.href = link; a.textContent = link;
      out.appendChild(a);
    }
  }
  document.getElementById("push-button").addEventListener("click", async () => {
    try {
      const reg = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
      await navigator.serviceWorker.ready;
      if ((await Notification.requestPermission()) !== "granted") {
        say(box.dataset.denied);
        return;
      }
      const sub = await reg.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: key(box.dataset.key),
      });
      const r = await fetch("/subscribe", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ kind: "webpush", subscription: sub.toJSON(), interests: interests() }),
      });
      const j = await r.json();
      if (r.ok) {
        say(box.dataset.done, j.manage);
      } else {
        say(box.dataset.failed + " " + j.detail);
      }
    } catch (e) {
      say(box.dataset.failed + " " + e.message);
    }
  });
})();
