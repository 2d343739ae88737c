// ocm dashboard: live fragments over one server-sent-event stream per page, and confirmation
// before destructive forms. Every page works without this script (read-only, refresh).
"use strict";
(function () {
  const state = document.getElementById("live-state");
  const say = (text, cls) => { if (state) { state.textContent = text; state.className = "live " + cls; } };

  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  const url = document.body.dataset.stream;
  if (!url || !window.EventSource) return;
  let source = null;
  const connect = () => {
    source = new EventSource(url);
    source.onopen = () => say("live", "good");
    source.onerror = () => say("reconnecting…", "warn");  // EventSource retries by itself
    source.addEventListener("swap", (event) => {
      const message = JSON.parse(event.data);
      const target = document.getElementById(message.target);
      if (!target) return;
      // Keep what the user is typing or has open.
      const active = document.activeElement;
      if (active && target.contains(active) && active.matches("input, textarea, select")) return;
      const open = [...target.querySelectorAll("details[open]")].map((d) => d.id).filter(Boolean);
      target.innerHTML = message.html;
      open.forEach((id) => { const d = document.getElementById(id); if (d) d.open = true; });
    });
    source.addEventListener("append", (event) => {
      const message = JSON.parse(event.data);
      const target = document.getElementById(message.target);
      if (!target) return;
      target.insertAdjacentHTML("beforeend", message.html);
      while (target.children.length > message.keep) target.removeChild(target.firstElementChild);
    });
  };
  connect();
  window.addEventListener("pagehide", () => { if (source) source.close(); });
})();
