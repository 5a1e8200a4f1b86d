// The console's only script: refreshes live fragments and sends actions.
// Every action is a POST of the form's fields as JSON with the page's CSRF
// token; the server checks it together with the Origin.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const REFRESH_MS = 2000;

  async function refresh(el) {
    const when = el.dataset.refreshWhen;
    if (when && !document.getElementById(when).checked) return;
    try {
      const r = await fetch(el.dataset.refresh, { credentials: "same-origin" });
      if (r.ok) {
        el.innerHTML = await r.text();
        el.dataset.refreshedAt = String(Date.now());
      }
    } catch (e) {
      // The environment is stopping or restarting: try again on the next tick.
    }
  }
  function refreshAll() {
    document.querySelectorAll("[data-refresh]").forEach(refresh);
  }
  setInterval(refreshAll, REFRESH_MS);

  const result = document.getElementById("action-result");
  function say(text, isError) {
    if (!result) return;
    result.textContent = text;
    result.classList.toggle("error", isError);
  }

  document.addEventListener("submit", async function (ev) {
    const form = ev.target;
    if (!form.dataset.action) return;
    ev.preventDefault();
    const fields = {};
    new FormData(form).forEach(function (v, k) { fields[k] = String(v); });
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const r = await fetch(form.dataset.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(fields),
      });
      const body = await r.json().catch(function () { return {}; });
      if (r.ok) {
        say(body.message || "Done", false);
      } else {
        say("Refused (" + r.status + "): " + (body.error || r.statusText), true);
      }
    } catch (e) {
      say("Cannot reach the console: " + e.message, true);
    } finally {
      if (button) button.disabled = false;
      refreshAll();
    }
  });
})();
