// Shared by the officer console and the command dashboard (served from common/static by both apps): JSON fetches with the session CSRF token, SSE with reconnect, formatting.
"use strict";
const Z = {
  csrf: null,
  async me() {
    const r = await fetch("/api/me", {headers: {accept: "application/json"}});
    if (r.status === 401) { location.href = "/login"; throw new Error("login required"); }
    const j = await r.json();
    Z.csrf = j.csrf;
    return j;
  },
  async get(url) {
    const r = await fetch(url, {headers: {accept: "application/json"}});
    if (r.status === 401) { location.href = "/login"; throw new Error("login required"); }
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).detail || r.statusText);
    return r.json();
  },
  async post(url, body) {
    const r = await fetch(url, {method: "POST", body: JSON.stringify(body || {}),
      headers: {"content-type": "application/json", "x-csrf-token": Z.csrf || "", accept: "application/json"}});
    if (r.status === 401) { location.href = "/login"; throw new Error("login required"); }
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.detail ? (typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail)) : r.statusText);
    return j;
  },
  async logout() {
    await Z.post("/logout", {}).catch(() => null);
    location.href = "/login";
  },
  events(url, handlers, onState) {
    // EventSource reconnects by itself; we only report the state for the status bar.
    const es = new EventSource(url);
    es.onopen = () => onState && onState(true);
    es.onerror = () => onState && onState(false);
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (m) => { try { fn(JSON.parse(m.data)); } catch (e) { console.error(name, e); } });
    }
    return es;
  },
  el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  },
  time(t) { return t ? new Date(t * 1000).toISOString().slice(11, 19) + "Z" : "—"; },
  datetime(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z" : "—"; },
  mhz(hz) { return (hz / 1e6).toFixed(4) + " MHz"; },
  ago(t) {
    if (!t) return "never";
    const s = Math.max(0, Date.now() / 1000 - t);
    return s < 90 ? `${s.toFixed(0)} s ago` : s < 5400 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
  },
};
