// The patients' push pages: turning notifications on (sign-up page) and off (stop page).
// Loaded as a file because the pages' Content-Security-Policy allows no inline script.
// Browser features used: navigator.serviceWorker, Notification and the registration's
// pushManager (always called as its method, so tests can stub `subscribe`).
(function () {
  "use strict";

  var signup = document.getElementById("push-signup");
  var stop = document.getElementById("push-stop-panel");
  var statusLine = document.getElementById("push-status");

  function say(text) {
    if (statusLine) {
      statusLine.textContent = text;
    }
  }

  function supported() {
    return "serviceWorker" in navigator && "Notification" in window;
  }

  // The VAPID public key arrives as base64url; pushManager.subscribe wants its bytes.
  function keyBytes(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    base64 += "===".slice(0, (4 - (base64.length % 4)) % 4);
    var raw = window.atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i += 1) {
      bytes[i] = raw.charCodeAt(i);
    }
    return bytes;
  }

  // Older Safari takes a callback and returns nothing; newer browsers return a promise.
  function askPermission() {
    return new Promise(function (resolve) {
      var answer = Notification.requestPermission(resolve);
      if (answer && typeof answer.then === "function") {
        answer.then(resolve);
      }
    });
  }

  function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
  }

  function refusal(status) {
    if (status === 410) {
      return "This link has expired. Please ask the surgery to send you a new one.";
    }
    if (status === 403 || status === 404) {
      return "This link is not valid any more. Please ask the surgery to send you a new one.";
    }
    if (status === 422) {
      return "Your browser's notification service cannot be used. Please try a different browser.";
    }
    return "Something went wrong on our side. Please try again later.";
  }

  async function turnOn(button) {
    button.disabled = true;
    say("Turning on notifications…");
    try {
      await navigator.serviceWorker.register("/sw.js", { scope: "/" });
      var registration = await navigator.serviceWorker.ready;
      var permission = await askPermission();
      if (permission !== "granted") {
        say(
          "Notifications are blocked for this site. To turn them on, allow notifications " +
            "for this site in your browser's settings, then press the button again."
        );
        button.disabled = false;
        return;
      }
      var subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(signup.dataset.vapidKey),
      });
      var details =
        typeof subscription.toJSON === "function" ? subscription.toJSON() : subscription;
      var response = await postJson(signup.dataset.subscribeUrl, {
        token: signup.dataset.token,
        subscription: details,
      });
      if (response.ok) {
        say("Notifications are on. You will get notifications from the surgery on this device.");
        button.hidden = true;
      } else if (response.status === 429) {
        // Too many sign-ups from this network, or the surgery has as many as it takes:
        // the answer says which.
        var answer = await response.json().catch(function () {
          return {};
        });
        say(
          (answer.error && answer.error.message) ||
            "Too many sign-ups just now. Please try again in a few minutes."
        );
        button.disabled = false;
      } else {
        say(refusal(response.status));
        button.disabled = false;
      }
    } catch (error) {
      say("Notifications could not be turned on in this browser (" + error.message + ").");
      button.disabled = false;
    }
  }

  async function turnOff(button) {
    button.disabled = true;
    say("Stopping notifications…");
    try {
      var registration = await navigator.serviceWorker.getRegistration("/");
      var subscription = registration
        ? await registration.pushManager.getSubscription()
        : null;
      if (!subscription) {
        say("Notifications are not turned on in this browser, so there is nothing to stop.");
        return;
      }
      var response = null;
      try {
        response = await postJson(stop.dataset.unsubscribeUrl, {
          endpoint: subscription.endpoint,
        });
      } catch (error) {
        response = null;
      }
      // Unsubscribed in the browser either way: a gone subscription is dropped when the
      // gateway next tries it, so the patient stops getting notifications regardless.
      await subscription.unsubscribe();
      if (response && response.ok) {
        say("Notifications are stopped. You will not get any more on this device.");
      } else {
        say(
          "Notifications are stopped in this browser. The surgery's system could not be told " +
            "straight away, but it will stop sending them."
        );
      }
      button.hidden = true;
    } catch (error) {
      say("Notifications could not be stopped (" + error.message + "). Turn them off for " +
        "this site in your browser's settings instead.");
      button.disabled = false;
    }
  }

  function wire(buttonId, action) {
    var button = document.getElementById(buttonId);
    if (!button) {
      return;
    }
    if (!supported()) {
      button.disabled = true;
      say(
        "This browser cannot get notifications from websites. Try a different browser, " +
          "or keep getting texts and emails from the surgery as usual."
      );
      return;
    }
    button.addEventListener("click", function () {
      action(button);
    });
  }

  if (signup) {
    wire("push-subscribe", turnOn);
  }
  if (stop) {
    wire("push-stop", turnOff);
  }
})();
