// The service worker of the patients' push pages: shows the gateway's push messages and
// reports each one shown, and each one tapped, back to the gateway (push with proof).
// The payload is what the `webpush` provider sends (gateway/src/providers/webpush.rs):
// { "title", "body", "url" (where a tap leads, or null), "practice" (ODS code), "message_id",
//   "receipt_token" (signed, for this message only, or null), "receipt_url" (a path here) }.

var RECEIPTS = "/api/v1/push/receipts";

self.addEventListener("install", function () {
  self.skipWaiting();
});

self.addEventListener("activate", function (event) {
  event.waitUntil(self.clients.claim());
});

// Posts one receipt ("shown" or "read"). Never fails: a lost receipt costs only the proof,
// and the gateway may then send the message another way after its deadline.
function report(data, event) {
  if (!data || !data.receipt_token) {
    return Promise.resolve();
  }
  var url = typeof data.receipt_url === "string" && data.receipt_url.charAt(0) === "/" &&
    data.receipt_url.charAt(1) !== "/" ? data.receipt_url : RECEIPTS;
  return fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: data.receipt_token, event: event }),
    credentials: "omit",
  }).catch(function () {});
}

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
  var data = {
    url: payload.url || null,
    practice: payload.practice || null,
    message_id: payload.message_id || null,
    receipt_token: payload.receipt_token || null,
    receipt_url: payload.receipt_url || null,
  };
  var options = { body: payload.body || "", data: data };
  if (payload.message_id) {
    // The same message delivered twice shows once.
    options.tag = "message-" + payload.message_id;
  }
  event.waitUntil(
    self.registration.showNotification(title, options).then(function () {
      return report(data, "shown");
    })
  );
});

// What a tap does: reports the message read and opens its link. A function of its own so
// that the browser test can run exactly this path (a headless browser cannot click a
// system notification).
function notificationTapped(notification) {
  notification.close();
  var data = notification.data || {};
  // Opened at once, while the tap still counts as the patient's own action.
  var opening = data.url ? self.clients.openWindow(data.url).catch(function () {}) : null;
  return Promise.all([report(data, "read"), opening]);
}

self.addEventListener("notificationclick", function (event) {
  event.waitUntil(notificationTapped(event.notification));
});
