// The service worker of the patients' push pages: shows the gateway's push messages.
// The payload is what the `webpush` provider sends (gateway/src/providers/webpush.rs):
// { "title", "body", "url" (where a tap leads, or null), "practice" (ODS code), "message_id" }.

self.addEventListener("install", function () {
  self.skipWaiting();
});

self.addEventListener("activate", function (event) {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("push", function (event) {
  var payload = {};
  if (event.data) {
    try {
      payload = event.data.json();
    } catch (error) {
      payload = { body: event.data.text() };
    }
  }
  var title = payload.title || "Message from your GP surgery";
  var options = {
    body: payload.body || "",
    data: {
      url: payload.url || null,
      practice: payload.practice || null,
      message_id: payload.message_id || null,
    },
  };
  if (payload.message_id) {
    // The same message delivered twice shows once.
    options.tag = "message-" + payload.message_id;
  }
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = event.notification.data && event.notification.data.url;
  if (url) {
    event.waitUntil(self.clients.openWindow(url));
  }
});
