// The admin console's few scripts: live template preview with the SMS segment counter,
// the status-change preview with recipient counts, and a broadcast's live progress.
// They call the JSON API with the session cookie and the page's CSRF token.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

async function api(method, path, body) {
  const response = await fetch("/api/v1" + path, {
    method,
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, data };
}

function text(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = value ?? "";
}

/** Pence as pounds and pence, e.g. 4320 -> "£43.20". */
function pounds(pence) {
  return `£${(pence / 100).toFixed(2)}`;
}

function describeCost(sms) {
  if (!sms) return "";
  const encoding = sms.encoding === "gsm7" ? "GSM-7" : "UCS-2 (70 characters per segment)";
  const plural = sms.segments === 1 ? "segment" : "segments";
  let out = `${sms.characters} characters, ${sms.segments} ${plural}, ${encoding}`;
  if (sms.ucs2_characters && sms.ucs2_characters.length) {
    const list = sms.ucs2_characters
      .map((c) => (c.replacement !== null ? `${c.character} (use ${JSON.stringify(c.replacement)})` : c.character))
      .join(", ");
    out += `. Forcing UCS-2: ${list}`;
  }
  return out;
}

// Template editor: preview the draft as it is typed.
const templateForm = document.getElementById("template-form");
if (templateForm) {
  const field = (name) => templateForm.querySelector(`[name="${name}"]`);
  let timer = null;
  let sequence = 0;
  async function refresh() {
    const mine = ++sequence;
    const draft = { body: field("body").value };
    for (const part of ["subject", "html", "link"]) {
      if (field(part)) draft[part] = field(part).value;
    }
    const request = {
      key: templateForm.dataset.key,
      channel: templateForm.dataset.channel,
      language: templateForm.dataset.language,
      draft,
    };
    if (templateForm.dataset.practice) request.practice = templateForm.dataset.practice;
    const { ok, data } = await api("POST", "/templates/preview", request);
    if (mine !== sequence) return;
    const problems = document.getElementById("live-problems");
    problems.replaceChildren();
    if (ok) {
      text("live-subject", data.subject);
      text("live-preview", data.body);
      text("segments", describeCost(data.sms));
      for (const w of data.warnings || []) {
        const li = document.createElement("li");
        li.textContent = w.reason + (w.suggestion ? ` (${w.suggestion})` : "");
        problems.append(li);
      }
    } else {
      const details = (data.error && data.error.details) || [];
      for (const p of Array.isArray(details) ? details : []) {
        const li = document.createElement("li");
        li.textContent = `${p.part}, line ${p.line}, column ${p.column}: ${p.reason}`;
        problems.append(li);
      }
      if (!details.length && data.error) {
        const li = document.createElement("li");
        li.textContent = data.error.message;
        problems.append(li);
      }
      text("segments", "");
    }
  }
  templateForm.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
  refresh();
}

// Status change: preview each channel's wording and the recipients before sending.
const statusForm = document.getElementById("status-form");
if (statusForm) {
  const ods = statusForm.dataset.ods;
  document.getElementById("preview-status").addEventListener("click", async () => {
    const select = statusForm.querySelector("#kind");
    const kind = select.value;
    const fallback = select.selectedOptions[0]?.dataset.headline || "";
    const headline = statusForm.querySelector("#headline").value.trim();
    const details = statusForm.querySelector("#details").value.trim();
    // The server fills in the practice's own details.
    const data = {
      status: {
        kind, headline: headline || fallback, details: details || null,
        starts: null, until: null, starts_at: null, until_at: null,
      },
    };
    const key = `status.${kind}`;
    const [sms, email, push] = await Promise.all(
      ["sms", "email", "push"].map((channel) => api("POST", "/templates/preview", { key, channel, practice: ods, data }))
    );
    if (sms.ok) {
      text("preview-sms", sms.data.body);
      text("preview-sms-cost", describeCost(sms.data.sms));
      const a = sms.data.audience;
      if (a) {
        const r = a.recipients || {};
        text(
          "audience",
          `${r.sms || 0} by text message (${a.sms_segments_total} segments in all), ${r.email || 0} by email, ` +
            `${r.push || 0} by browser notification; ${a.no_contact} ${a.no_contact === 1 ? "patient" : "patients"} cannot be reached.` +
            (a.estimated_cost ? ` Estimated cost: ${pounds(a.estimated_cost.total_pence)}.` : "")
        );
      }
    }
    if (email.ok) {
      text("preview-email-subject", email.data.subject);
      text("preview-email", email.data.body);
    }
    if (push.ok) {
      text("preview-push-title", push.data.subject);
      text("preview-push", push.data.body);
    }
    document.getElementById("status-preview").hidden = false;
  });
}

// Broadcast progress: poll until every message has an outcome.
const progress = document.getElementById("progress");
if (progress) {
  const id = progress.dataset.broadcast;
  async function poll() {
    const { ok, data } = await api("GET", `/broadcasts/${id}`);
    if (ok) {
      const states = data.by_state || {};
      const total = Object.values(states).reduce((a, b) => a + b, 0);
      const waiting = (states.queued || 0) + (states.sending || 0);
      const tbody = document.querySelector("#progress-table tbody");
      tbody.replaceChildren();
      for (const [state, count] of Object.entries(states)) {
        const tr = document.createElement("tr");
        for (const value of [state, count]) {
          const td = document.createElement("td");
          td.textContent = value;
          tr.append(td);
        }
        tbody.append(tr);
      }
      const bar = document.getElementById("progress-bar");
      bar.max = Math.max(total, 1);
      bar.value = total - waiting;
      const cost = data.cost
        ? ` · estimated cost ${pounds(data.cost.estimated.total_pence)}, spent so far ${pounds(data.cost.actual.total_pence)}`
        : "";
      text("progress-summary", `${total - waiting} of ${total} messages done${cost}`);
      if (waiting === 0 && data.fanout_complete) {
        document.getElementById("progress-done").hidden = false;
        return;
      }
    }
    setTimeout(poll, 1000);
  }
  poll();
}
