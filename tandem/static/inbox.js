// The inbox page's behaviour; served by tandem/inbox_page.py. It polls state.json every
// second and renders it. Data goes into the DOM with textContent only, so a prompt or an
// address can never inject markup.
"use strict";
const seen = new Set();
let first = true;
let skew = 0;  // server clock minus ours, so countdowns agree with the scheduler

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}
function fmt(at, zone, opts) {
  try {
    return new Intl.DateTimeFormat("en-GB", { timeZone: zone || undefined, ...opts })
      .format(new Date(at * 1000));
  } catch (e) {
    return new Intl.DateTimeFormat("en-GB", opts).format(new Date(at * 1000));
  }
}
function span(seconds) {
  const s = Math.abs(seconds);
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
const LETTER = { push: "T", email: "@", sms: "#" };

function nudgeCard(n, zone) {
  const key = n.address + "|" + n.at;
  const card = el("article", "nudge" + (seen.has(key) || first ? "" : " fresh"));
  seen.add(key);
  card.dataset.channel = n.channel;
  const top = el("div", "top");
  top.append(el("span", "icon " + n.channel, LETTER[n.channel] || "T"));
  top.append(el("span", "app", "Tandem \u00b7 " + n.channel));
  top.append(el("span", "when", fmt(n.at, zone, { hour: "2-digit", minute: "2-digit",
                                                 second: "2-digit" })));
  card.append(top, el("div", "title", n.title), el("div", "body", n.body));
  let cls = "lateness", text = "lateness unknown";
  if (n.lateness_s !== null) {
    const l = n.lateness_s;
    cls += l < 2 ? " ok" : l < 60 ? " slow" : " late";
    text = l < 0 ? span(l) + " early" : span(l) + " late";
  }
  const chip = el("span", cls, text);
  chip.title = n.scheduled_for === null ? "scheduled instant not in the history yet"
    : "scheduled " + fmt(n.scheduled_for, zone, { hour: "2-digit", minute: "2-digit",
                                                  second: "2-digit" });
  card.append(chip);
  return card;
}

function phone(p, now) {
  const box = el("section", "phone");
  box.dataset.partner = p.name;
  const frame = el("div", "frame"), screen = el("div", "screen");
  const status = el("div", "status");
  status.append(el("span", "", fmt(now, p.timezone, { hour: "2-digit", minute: "2-digit" })),
                el("span", "", "5G \u25ae\u25ae\u25ae"));
  const clock = el("div", "clock");
  clock.append(el("div", "date", fmt(now, p.timezone, { weekday: "long", day: "numeric",
                                                        month: "long" })),
               el("div", "time", fmt(now, p.timezone, { hour: "2-digit", minute: "2-digit" })));
  const stack = el("div", "stack");
  if (!p.nudges.length) stack.append(el("div", "empty", "No notifications yet"));
  for (const n of p.nudges) stack.append(nudgeCard(n, p.timezone));
  screen.append(el("div", "island"), status, clock, stack);
  frame.append(screen);
  const label = el("div", "label");
  label.append(el("div", "name", p.name));
  const meta = [p.timezone, ...p.addresses].filter(Boolean).join(" \u00b7 ");
  label.append(el("div", "meta", meta));
  box.append(frame, label);
  return box;
}

function occurrence(o, now, zones) {
  const row = el("div", "occurrence");
  const what = el("div", "what");
  what.append(el("span", "", o.ritual || "ritual"), el("span", "in", "in " + span(o.at - now)));
  const times = o.times.map(t => t.partner + " " +
    fmt(t.at, zones[t.partner], { weekday: "short", hour: "2-digit", minute: "2-digit" }));
  row.append(what, el("div", "times", times.join(" \u00b7 ")));
  if (o.planner) row.append(el("div", "times", o.planner + " plans"));
  return row;
}

function render(state) {
  const now = Date.now() / 1000 + skew;
  document.getElementById("couple").textContent = state.couple ? state.couple.name : "";
  const error = document.getElementById("error");
  error.hidden = !state.error;
  error.textContent = state.error || "";
  const phones = document.getElementById("phones");
  phones.replaceChildren(...state.phones.map(p => phone(p, now)));
  if (!state.phones.length) phones.append(el("div", "empty", "Waiting for the first nudge\u2026"));
  const zones = Object.fromEntries(state.phones.map(p => [p.name, p.timezone]));
  const upcoming = document.getElementById("upcoming");
  upcoming.replaceChildren(...state.upcoming.map(o => occurrence(o, now, zones)));
  if (!state.upcoming.length) upcoming.append(el("div", "times", "Nothing scheduled"));
  first = false;
}

async function poll() {
  const live = document.getElementById("live");
  try {
    const answer = await fetch("state.json", { cache: "no-store" });
    const state = await answer.json();
    skew = state.now - Date.now() / 1000;
    render(state);
    live.className = "live";
    live.textContent = "live";
  } catch (e) {
    live.className = "live stale";
    live.textContent = "reconnecting";
  }
  setTimeout(poll, 1000);
}
poll();
