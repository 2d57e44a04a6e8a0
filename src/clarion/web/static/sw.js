// Clarion's service worker: shows this publisher's push messages, one notification per story
// (an update replaces the alert: the tag is the story's Topic), and opens the notice on a click.
self.addEventListener("push", (event) => {
  let m = {};
  try { m = event.data ? event.data.json() : {}; } catch (e) { m = { title: event.data.text() }; }
  const title = m.title || "Alert";
  event.waitUntil(self.registration.showNotification(title, {
    body: m.body || "",
    image: m.image || undefined,
    tag: m.tag || undefined,
    renotify: Boolean(m.tag),
    requireInteraction: m.severity === "extreme" || m.severity === "severe",
    data: { url: m.url || "/" },
  }));
});
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || "/";
  event.waitUntil(self.clients.openWindow(url));
});
