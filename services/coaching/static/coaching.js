// Live updates without reloading (Server-Sent Events): after a change to a participant,
// fetch that participant's row (dashboard) or figures (participant page) and swap it in.
(function () {
  "use strict";
  const rows = document.querySelector("[data-live-rows]");
  const figures = document.querySelector("[data-live-figures]");
  const status = document.getElementById("live-status");
  if ((!rows && !figures) || !("EventSource" in window)) return;

  const say = (text) => { if (status) status.textContent = text; };
  const expired = () => {
    say("Uw sessie is verlopen. Vernieuw de pagina om opnieuw in te loggen.");
    if (status) status.dataset.live = "off";
    source.close();
  };
  const fragment = (html) => {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content;
  };

  // One fetch per row (or figures) at a time: changes that come while it is under way ask for
  // one more fetch after it. A morning's burst of opens then makes no burst of fetches, and an
  // older answer can never land after a newer one.
  const busy = new Map();
  async function oneAtATime(key, refresh) {
    if (busy.has(key)) { busy.set(key, true); return; }
    try {
      do { busy.set(key, false); await refresh(); } while (busy.get(key));
    } finally {
      busy.delete(key);
    }
  }
  const opened = new Set();  // rows with an open not yet announced

  async function refreshRow(id) {
    const response = await fetch("/overzicht/rij/" + encodeURIComponent(id), { credentials: "same-origin" });
    if (response.status === 401) return expired();
    const existing = document.getElementById("p-" + id);
    if (response.status === 404) { if (existing) existing.remove(); return; }
    if (!response.ok) return;
    const row = fragment(await response.text()).firstElementChild;
    if (!row) return;
    if (existing) existing.replaceWith(row);
    else if (rows.dataset.filter === "alle") rows.tBodies[0].append(row);
    else return;
    row.classList.add("flash");
    const name = row.querySelector(".name");
    if (opened.delete(id) && name) say(name.textContent + " heeft zojuist een mail geopend.");
  }

  async function refreshFigures(id) {
    const response = await fetch("/deelnemers/" + encodeURIComponent(id) + "/kerncijfers", { credentials: "same-origin" });
    if (response.status === 401) return expired();
    if (!response.ok) return;
    figures.querySelector("[data-figures-body]").replaceChildren(fragment(await response.text()));
    const now = new Date();
    say("Bijgewerkt om " + now.toLocaleTimeString("nl-NL", { hour: "2-digit", minute: "2-digit" }) + ".");
  }

  const source = new EventSource("/live");
  source.addEventListener("ready", () => {
    if (status) status.dataset.live = "on";
  });
  source.addEventListener("participant", (event) => {
    const change = JSON.parse(event.data);
    const id = change.participant_id;
    if (rows) {
      if (change.event_type === "mail.opened") opened.add(id);
      oneAtATime("row " + id, () => refreshRow(id));
    }
    if (figures && figures.dataset.participant === id) oneAtATime("figures", () => refreshFigures(id));
  });
  source.addEventListener("reload", () => window.location.reload());
  source.addEventListener("expired", expired);
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) expired();
  });
})();
