// ocm dashboard: live fragments over one server-sent-event stream per page, and confirmation
// before destructive forms. Every page works without this script (read-only, refresh).
"use strict";
(function () {
  const state = document.getElementById("live-state");
  const say = (text, cls) => { if (state) { state.textContent = text; state.className = "live " + cls; } };

  // A destructive form asks first. Forms with a `confirmed` field take the answer as given
  // here; without scripts the server asks on a page of its own instead.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = form.getAttribute("data-confirm");
    if (!question) return;
    if (!window.confirm(question)) { event.preventDefault(); return; }
    if (form.elements.confirmed) form.elements.confirmed.value = "yes";
  });

  // "Back" keeps what was typed into the form (the link itself goes to the form's page).
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a[data-back]");
    if (link && window.history.length > 1) { event.preventDefault(); window.history.back(); }
  });

  // Logs show their newest lines, unless the reader scrolled up.
  const atEnd = (p) => p.scrollHeight - p.scrollTop - p.clientHeight < 8;
  const followLogs = (root, kept) => root.querySelectorAll("pre.log").forEach((p) => {
    p.scrollTop = kept && kept.has(p.id) ? kept.get(p.id) : p.scrollHeight;
  });
  followLogs(document, null);

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
      const scrolled = [...target.querySelectorAll("pre.log[id]")].filter((p) => !atEnd(p))
        .map((p) => [p.id, p.scrollTop]);
      target.innerHTML = message.html;
      open.forEach((id) => { const d = document.getElementById(id); if (d) d.open = true; });
      followLogs(target, new Map(scrolled));
    });
    source.addEventListener("end", () => { source.close(); say("done", "muted"); });
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
