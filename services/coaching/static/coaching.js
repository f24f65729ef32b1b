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

  async function refreshRow(id, type) {
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
    if (type === "mail.opened" && name) say(name.textContent + " heeft zojuist een mail geopend.");
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
    if (rows) refreshRow(change.participant_id, change.event_type);
    if (figures && figures.dataset.participant === change.participant_id) refreshFigures(change.participant_id);
  });
  source.addEventListener("reload", () => window.location.reload());
  source.addEventListener("expired", expired);
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) expired();
  });
})();
