// The wharf console: a small single-page app over the public REST API (nothing here that the
// API cannot do). No framework and no build step: the files are embedded in the binary as
// they are. Every piece of data reaches the page through textContent, never as HTML.
"use strict";

const API = "/service/rest/v1";
const state = { user: null, admin: false, csrf: null, lang: "en", flash: null };

// ---- i18n ------------------------------------------------------------------------------------

function pickLang() {
  const saved = localStorage.getItem("wharf.lang");
  if (saved && window.WHARF_I18N[saved]) return saved;
  for (const l of navigator.languages || [navigator.language || "en"]) {
    if (l.toLowerCase().startsWith("zh")) return "zh-CN";
    if (l.toLowerCase().startsWith("en")) return "en";
  }
  return "en";
}

function t(key, ...args) {
  const table = window.WHARF_I18N[state.lang] || window.WHARF_I18N.en;
  let s = table[key] || window.WHARF_I18N.en[key] || key;
  args.forEach((a, i) => { s = s.replace(`{${i}}`, a); });
  return s;
}

/// The translation of `key` where the tables have one, else `fallback` (server values such as
/// task names and audit actions that a newer server may add).
function tr(key, fallback) {
  const table = window.WHARF_I18N[state.lang] || window.WHARF_I18N.en;
  return table[key] || window.WHARF_I18N.en[key] || fallback;
}

/// A role's description: the built-in roles' in the reader's language, others as written.
function roleDescription(r) { return tr(`role.${r.id}`, r.description || ""); }

/// A privilege's description: repository privileges composed in the reader's language from
/// their parts, application privileges by name.
function privilegeDescription(p) {
  if (!p) return "";
  if (p.type === "repository-view") {
    const action = (p.actions || []).map((a) => tr("privs." + String(a).toLowerCase(), a)).join(", ");
    return t("privs.describe", action, p.format === "*" ? t("cleanup.allFormats") : p.format, p.repository === "*" ? t("privs.allRepos") : p.repository);
  }
  return tr(`priv.${p.name}`, p.description || "");
}

/// Text the server wrote in English (a task's message): marked as such for screen readers,
/// until the server gives such messages a code the console can translate.
function serverText(text) { return text ? h("span", { lang: "en", text }) : ""; }

function translateStatic() {
  document.documentElement.lang = state.lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
}

// ---- DOM and API helpers ---------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/// An error the server gave, worded in the console's language where its code is one the
/// console knows (`english` tells when the server's own words had to stand).
class ApiError extends Error {
  constructor(status, body) {
    const parts = typeof body === "object" && body ? (Array.isArray(body) ? body.map(errText) : [errText(body)]) : [{ text: String(body), english: true }];
    super(parts.map((p) => p.text).join("; "));
    this.english = parts.some((p) => p.english);
    this.status = status;
    this.body = body;
  }
}

/// One error item ({id?, message, code?}) in the user's language when its code allows.
function errText(err) {
  const key = "err." + (err.code || "") + (err.kind ? "." + err.kind.replace(/ /g, "_") : "");
  const table = window.WHARF_I18N[state.lang] || window.WHARF_I18N.en;
  const known = err.code && err.code !== "invalid" && table[key];
  if (!known) return { text: err.message || JSON.stringify(err), english: state.lang !== "en" };
  if (err.kind) return { text: t(key, err.name), english: false };
  const f = String(err.id || "").replace(/^PARAMETER /, "");
  return { text: f ? `${f}: ${t(key)}` : t(key), english: false };
}

async function api(method, path, body) {
  const headers = { Accept: "application/json", "X-Requested-With": "XMLHttpRequest" };
  if (body !== undefined) headers["Content-Type"] = typeof body === "string" ? "text/plain" : "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const res = await fetch(API + path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

function main() { return document.getElementById("main"); }

/// The children worth drawing: replaceChildren would print null and false as text.
function present(nodes) { return nodes.flat().filter((n) => n !== null && n !== undefined && n !== false); }

function show(...nodes) {
  const m = main();
  const flash = state.flash;
  state.flash = null;
  m.replaceChildren(...present([flash ? notice(flash) : null, ...nodes]));
  // Which view is on screen (the route it was drawn for): tests and assistive tools can tell a
  // finished page from the one before.
  m.dataset.view = state.user ? drawing : "login";
  m.focus();
}

function notice(text, bad) { return h("p", { class: bad ? "notice bad" : "notice", role: bad ? "alert" : "status", text }); }

/// A notice of a failed call, marked English where the server's words stand.
function failed(e) { const n = notice(t("error", e.message), true); if (e.english) n.lang = "en"; return n; }

function failure(e) {
  if (e.status === 401) { state.user = null; return renderLogin(); }
  if (e.status === 403) return show(h("h1", { text: t("forbidden") }));
  const n = notice(t("error", e.message), true);
  if (e.english) n.lang = "en";
  show(n);
}

function table(headers, rows, optional) {
  if (!rows.length) return h("p", { class: "muted", text: t("none") });
  return h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x, i) => h("th", { scope: "col", class: optional && optional.includes(i) ? "optional" : null, text: x })))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: optional && optional.includes(i) ? "optional" : null }, c)))))));
}

function field(label, input, name) {
  const id = "f-" + (name || Math.random().toString(36).slice(2));
  input.id = id;
  if (name) input.name = name;
  return h("div", {}, h("label", { for: id, text: label }), input, h("div", { class: "error", "data-error-for": name || "", "aria-live": "polite" }));
}

/// Puts Nexus-shaped validation errors next to their fields; returns whether any was placed.
function placeErrors(form, e) {
  form.querySelectorAll(".error").forEach((el) => { el.textContent = ""; });
  if (!Array.isArray(e.body)) return false;
  let placed = false;
  for (const err of e.body) {
    const f = String(err.id || "").replace(/^PARAMETER /, "");
    const slot = form.querySelector(`[data-error-for="${CSS.escape(f)}"]`) || form.querySelector(`[data-error-for="${CSS.escape(f.split(".")[0])}"]`);
    if (slot) {
      const said = errText(err);
      slot.textContent = said.text;
      if (said.english) slot.lang = "en"; else slot.removeAttribute("lang");
      placed = true;
    }
  }
  return placed;
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

/// A time from the API (epoch milliseconds or RFC 3339) in the reader's locale.
function when(v) {
  if (v === null || v === undefined || v === "") return "";
  const d = new Date(typeof v === "number" ? v : String(v));
  return isNaN(d) ? String(v) : d.toLocaleString(state.lang);
}

/// A list of (label, value) pairs; an empty value shows as a dash.
function factList(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", { text: k }), v instanceof Node ? h("dd", {}, v) : h("dd", { text: v || "—" })]));
}

/// A button that copies `text`; `label` says what it copies to screen readers.
function copyButton(text, label) {
  const copy = h("button", { type: "button", class: "copy secondary", text: t("copy"), "aria-label": label || null });
  copy.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(text); copy.textContent = t("copied"); } catch (_) { /* no clipboard: the text is selectable */ }
  });
  return copy;
}

function pre(text) {
  return h("pre", {}, copyButton(text), h("code", { text }));
}

// ---- login -----------------------------------------------------------------------------------

function renderLogin() {
  document.getElementById("top").hidden = true;
  document.getElementById("who").textContent = "";
  const user = h("input", { type: "text", autocomplete: "username", required: true });
  const pass = h("input", { type: "password", autocomplete: "current-password", required: true });
  const msg = h("div", { "aria-live": "assertive" }, state.loginNotice ? notice(state.loginNotice) : null);
  const form = h("form", { class: "card login" }, h("h1", { text: t("login.title") }),
    field(t("login.user"), user, "username"), field(t("login.password"), pass, "password"), msg,
    h("div", { class: "actions" }, h("button", { type: "submit", text: t("login.submit") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const s = await api("POST", "/session", { username: user.value, password: pass.value });
      Object.assign(state, { user: s.userId, admin: s.admin, csrf: s.csrfToken, loginNotice: null });
      // The page that was asked for (a link opened before login, or the page a session ended
      // on) is drawn: start() routes to the current hash.
      start();
    } catch (e) {
      msg.replaceChildren(notice(t("login.failed"), true));
    }
  });
  show(form);
  user.focus();
}

// ---- dashboard -------------------------------------------------------------------------------

async function renderDashboard() {
  const [repos, stores, health] = await Promise.all([
    api("GET", "/repositories"),
    state.admin ? api("GET", "/blobstores").catch(() => []) : Promise.resolve([]),
    fetch(API + "/status").then((r) => r.ok),
  ]);
  const rows = repos.map((r) => [
    h("a", { href: `#/repositories/${encodeURIComponent(r.name)}`, text: r.name }),
    r.format, tr("kind." + r.type, r.type),
    h("code", { text: r.url }),
    r.online === false ? t("no") : t("yes"),
    String(r.blobCount ?? ""), bytes(r.totalSizeInBytes),
    h("span", {}, h("a", { href: `#/repositories/${encodeURIComponent(r.name)}/usage`, text: t("usage") }), " ",
      state.admin ? h("a", { href: `#/repositories/${encodeURIComponent(r.name)}/edit`, text: t("edit") }) : null),
  ]);
  show(
    h("h1", { text: t("nav.dashboard") }),
    h("div", { class: "grid" },
      h("div", { class: "tile" }, h("b", { text: String(repos.length) }), t("dash.repos")),
      state.admin ? h("div", { class: "tile" }, h("b", { text: String(stores.length) }), t("dash.stores")) : null,
      h("div", { class: "tile" }, h("b", { class: health ? "ok" : "error", text: health ? t("dash.healthy") : "!" }), t("dash.status"))),
    h("h2", { text: t("dash.repos") }),
    table([t("name"), t("format"), t("type"), t("url"), t("online"), t("blobs"), t("size"), t("actions")], rows, [3, 5, 6]),
    stores.length ? h("h2", { text: t("dash.stores") }) : null,
    stores.length ? table([t("name"), t("blobs"), t("size")], stores.map((s) => [s.name, String(s.blobCount), bytes(s.totalSizeInBytes)])) : null,
  );
}

// ---- repositories ----------------------------------------------------------------------------

const KINDS = { docker: ["hosted", "proxy", "group"], pypi: ["hosted", "proxy", "group"], npm: ["hosted", "proxy", "group"] };
const DEFAULT_REMOTES = { docker: "https://registry-1.docker.io", pypi: "https://pypi.org", npm: "https://registry.npmjs.org" };

async function renderRepoForm(existingName) {
  const stores = await api("GET", "/blobstores").catch(() => [{ name: "default" }]);
  let current = null;
  if (existingName) {
    const summary = await api("GET", `/repositories/${encodeURIComponent(existingName)}`);
    current = await api("GET", `/repositories/${summary.format}/${summary.type}/${encodeURIComponent(existingName)}`);
    current.format = summary.format;
    current.type = summary.type;
  }
  const all = await api("GET", "/repositories");
  const format = h("select", { disabled: !!current }, Object.keys(KINDS).map((f) => h("option", { value: f, text: f })));
  const kind = h("select", { disabled: !!current }, ["hosted", "proxy", "group"].map((k) => h("option", { value: k, text: tr("kind." + k, k) })));
  const name = h("input", { type: "text", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]*", title: t("form.nameRule"), disabled: !!current });
  // A repository's content lives in its blob store: the server refuses to change it.
  const store = h("select", { disabled: !!current }, stores.map((s) => h("option", { value: s.name, text: s.name })));
  const policy = h("select", {}, ["allow", "allow_once", "deny"].map((p) => h("option", { value: p, text: tr("policy." + p, p) })));
  const anonymous = h("input", { type: "checkbox" });
  const httpPort = h("input", { type: "number", min: 1, max: 65535 });
  const remote = h("input", { type: "url" });
  const maxAge = h("input", { type: "number", step: "any", value: "1440" });
  // Group members in the order the group asks them: a list the admin orders, and a picker
  // that adds to its end.
  let chosen = current && current.group ? [...current.group.memberNames] : [];
  const memberList = h("ol", { class: "members", "aria-label": t("form.members") });
  const addPick = h("select", {});
  const addBtn = h("button", { type: "button", class: "secondary", text: t("add") });
  addPick.id = "f-group.memberNames";
  const members = h("div", {}, h("label", { for: addPick.id, text: t("form.members") }), memberList, h("div", { class: "actions" }, addPick, addBtn),
    h("div", { class: "error", "data-error-for": "group.memberNames", "aria-live": "polite" }));
  const writable = h("select", {});
  const extra = h("div", {});
  if (current) {
    format.value = current.format; kind.value = current.type; name.value = current.name;
    store.value = current.storage && current.storage.blobStoreName || "default";
    policy.value = (current.storage && current.storage.writePolicy || "allow").toLowerCase();
    anonymous.checked = !!current.anonymousRead;
    if (current.docker && current.docker.httpPort) httpPort.value = current.docker.httpPort;
    if (current.proxy) { remote.value = current.proxy.remoteUrl; maxAge.value = current.proxy.metadataMaxAge; }
  }
  function drawMembers(candidates) {
    memberList.replaceChildren(...chosen.map((m, i) => {
      const up = h("button", { type: "button", class: "secondary", text: "↑", "aria-label": t("member.up", m), disabled: i === 0 });
      const down = h("button", { type: "button", class: "secondary", text: "↓", "aria-label": t("member.down", m), disabled: i === chosen.length - 1 });
      const out = h("button", { type: "button", class: "secondary", text: "✕", "aria-label": t("member.remove", m) });
      up.addEventListener("click", () => { [chosen[i - 1], chosen[i]] = [chosen[i], chosen[i - 1]]; drawMembers(candidates); });
      down.addEventListener("click", () => { [chosen[i + 1], chosen[i]] = [chosen[i], chosen[i + 1]]; drawMembers(candidates); });
      out.addEventListener("click", () => { chosen.splice(i, 1); drawMembers(candidates); });
      return h("li", {}, h("span", { text: m }), up, down, out);
    }));
    const left = candidates.filter((r) => !chosen.includes(r.name));
    addPick.replaceChildren(...left.map((r) => h("option", { value: r.name, text: `${r.name} (${tr("kind." + r.type, r.type)})` })));
    addPick.disabled = addBtn.disabled = left.length === 0;
  }
  addBtn.addEventListener("click", () => {
    if (!addPick.value) return;
    chosen.push(addPick.value);
    layout();
  });
  function layout() {
    const f = format.value, k = kind.value;
    const candidates = all.filter((r) => r.format === f && r.type !== "group" && r.name !== name.value);
    chosen = chosen.filter((m) => candidates.some((r) => r.name === m));
    drawMembers(candidates);
    writable.replaceChildren(h("option", { value: "", text: "—" }), ...candidates.filter((r) => r.type === "hosted").map((r) => h("option", { value: r.name, text: r.name, selected: current && current.group && current.group.writableMember === r.name })));
    if (!remote.value && k === "proxy") remote.value = DEFAULT_REMOTES[f];
    extra.replaceChildren(...present([
      k === "hosted" ? field(t("form.writePolicy"), policy, "storage.writePolicy") : null,
      f === "docker" ? field(t("form.httpPort"), httpPort, "docker.httpPort") : null,
      k === "proxy" ? field(t("form.remoteUrl"), remote, "proxy.remoteUrl") : null,
      k === "proxy" ? field(t("form.metadataMaxAge"), maxAge, "proxy.metadataMaxAge") : null,
      k === "group" ? members : null,
      k === "group" ? field(t("form.writable"), writable, "group.writableMember") : null,
    ]));
  }
  format.addEventListener("change", () => { remote.value = ""; layout(); });
  kind.addEventListener("change", layout);
  layout();
  const msg = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card" },
    h("h1", { text: current ? `${t("edit")} ${current.name}` : t("nav.create") }),
    field(t("format"), format, "format"), field(t("type"), kind, "type"), field(t("name"), name, "name"),
    field(t("form.blobStore"), store, "storage"),
    h("label", {}, anonymous, " ", t("form.anonymous")),
    extra, msg,
    h("div", { class: "actions" }, h("button", { type: "submit", text: current ? t("save") : t("create") }),
      h("a", { href: "#/", text: t("cancel") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = format.value, k = kind.value;
    // PUT replaces the whole configuration (as Nexus's does), so an edit sends back what the
    // server showed with only the form's fields changed: settings the form does not show, and
    // the stored password (shown as null, which keeps it), stay as they are.
    const body = current ? JSON.parse(JSON.stringify(current)) : { name: name.value, online: true, storage: { strictContentTypeValidation: true } };
    for (const readOnly of ["format", "type", "url", "status"]) delete body[readOnly];
    body.anonymousRead = anonymous.checked;
    body.storage = Object.assign({}, body.storage, { blobStoreName: store.value });
    if (k === "hosted") body.storage.writePolicy = policy.value;
    if (f === "docker") body.docker = Object.assign({ v1Enabled: false, forceBasicAuth: false }, body.docker, { httpPort: httpPort.value ? Number(httpPort.value) : null });
    if (k === "proxy") {
      body.proxy = Object.assign({ contentMaxAge: 1440 }, body.proxy, { remoteUrl: remote.value, metadataMaxAge: Number(maxAge.value) });
      if (!current) {
        body.negativeCache = { enabled: true, timeToLive: 1440 };
        body.httpClient = { blocked: false, autoBlock: true };
      }
    }
    if (k === "group") body.group = Object.assign({}, body.group, { memberNames: [...chosen], writableMember: writable.value || null });
    try {
      if (current) await api("PUT", `/repositories/${f}/${k}/${encodeURIComponent(body.name)}`, body);
      else await api("POST", `/repositories/${f}/${k}`, body);
      location.hash = `#/repositories/${encodeURIComponent(body.name)}/usage`;
    } catch (e) {
      if (e.status === 401) return failure(e);
      if (!placeErrors(form, e)) msg.replaceChildren(failed(e));
    }
  });
  show(form);
}

async function renderRepo(name) {
  const r = await api("GET", `/repositories/${encodeURIComponent(name)}`);
  const del = state.admin ? h("button", { type: "button", class: "danger", text: t("delete") }) : null;
  if (del) del.addEventListener("click", async () => {
    if (!confirm(t("confirm.delete", name))) return;
    try {
      await api("DELETE", `/repositories/${encodeURIComponent(name)}`);
      state.flash = t("repo.deleted", name);
      location.hash = "#/";
    } catch (e) { failure(e); }
  });
  let toggle = null;
  if (state.admin) {
    const path = `/repositories/${r.format}/${r.type}/${encodeURIComponent(name)}`;
    const full = await api("GET", path);
    toggle = h("button", { type: "button", class: "secondary", text: full.online === false ? t("repo.bringOnline") : t("repo.takeOffline") });
    toggle.addEventListener("click", async () => {
      try {
        // PUT replaces the configuration: what GET showed goes back with `online` flipped.
        const body = JSON.parse(JSON.stringify(full));
        for (const readOnly of ["format", "type", "url", "status"]) delete body[readOnly];
        body.online = full.online === false;
        await api("PUT", path, body);
        state.flash = body.online ? t("repo.isOnline", name) : t("repo.isOffline", name);
        await renderRepo(name);
      } catch (e) { failure(e); }
    });
  }
  // Proxies and groups: ask the upstream again for everything cached.
  let invalidate = null;
  if (state.admin && (r.type === "proxy" || r.type === "group")) {
    invalidate = h("button", { type: "button", class: "secondary", text: t("repo.invalidate") });
    invalidate.addEventListener("click", async () => {
      try {
        await api("POST", `/repositories/${encodeURIComponent(name)}/invalidate-cache`);
        state.flash = t("repo.invalidated", name);
        await renderRepo(name);
      } catch (e) { failure(e); }
    });
  }
  const online = r.online === false || (r.status && r.status.online === false) ? t("no") : t("yes");
  // A proxy's upstream: available, auto-blocked after failures, and the last error seen.
  const up = r.status && r.status.upstream;
  const upstream = up ? h("div", { class: "card" }, h("h2", { text: t("proxy.upstream") }), h("dl", { class: "facts" },
    h("dt", { text: t("status") }), h("dd", { class: up.state === "available" ? "ok" : "error", text: t("proxy." + up.state) }),
    up.lastError ? [h("dt", { text: t("proxy.lastError") }), h("dd", { text: `${up.lastError} (${when(up.lastErrorAt)})` })] : null,
    up.failingSince ? [h("dt", { text: t("proxy.failingSince") }), h("dd", { text: when(up.failingSince) })] : null,
    up.nextProbeAt ? [h("dt", { text: t("proxy.nextProbe") }), h("dd", { text: when(up.nextProbeAt) })] : null)) : null;
  const health = state.admin ? await healthCard(name) : null;
  show(h("h1", { text: name }), table([t("format"), t("type"), t("url"), t("online")], [[r.format, tr("kind." + r.type, r.type), h("code", { text: r.url }), online]]), upstream, health,
    h("div", { class: "actions" }, toggle, invalidate,
      h("a", { href: `#/repositories/${encodeURIComponent(name)}/usage`, text: t("usage") }),
      h("a", { href: `#/browse/${encodeURIComponent(name)}`, text: t("nav.browse") }),
      state.admin ? h("a", { href: `#/repositories/${encodeURIComponent(name)}/edit`, text: t("edit") }) : null, del));
}

/// The repository's health check (administrators only): whether it is enabled, the last
/// check's counts and the first problems it found, and the switch. The check reads every file
/// back and compares its checksum; it repairs nothing, and the card says so.
async function healthCard(name) {
  const path = `/repositories/${encodeURIComponent(name)}/health-check`;
  let hc;
  try { hc = await api("GET", path); } catch (e) { return h("div", { class: "card" }, h("h2", { text: t("health.title") }), failed(e)); }
  const rep = hc.report;
  const toggle = h("button", { type: "button", class: "secondary", text: hc.enabled ? t("health.disable") : t("health.enable") });
  toggle.addEventListener("click", async () => {
    try {
      await api(hc.enabled ? "DELETE" : "POST", path);
      state.flash = hc.enabled ? t("health.isDisabled", name) : t("health.isEnabled", name);
      await renderRepo(name);
    } catch (e) { failure(e); }
  });
  const facts = [[t("status"), hc.enabled ? t("health.enabled") : t("health.disabled")], [t("health.lastCheck"), when(hc.lastCheckedAt) || t("health.never")]];
  if (hc.nextCheckAt) facts.push([t("health.nextCheck"), when(hc.nextCheckAt)]);
  let problems = null;
  if (rep) {
    const verdict = rep.ok ? t("health.ok") : rep.assetsChecked === rep.healthy ? t("health.upstreamBad") : t("health.bad");
    facts.push([t("health.result"), h("span", { class: rep.ok ? "ok" : "error", "data-health": rep.ok ? "ok" : "bad", text: verdict + (rep.complete ? "" : " " + t("health.incomplete")) })],
      [t("health.checked"), String(rep.assetsChecked)], [t("health.healthy"), String(rep.healthy)], [t("health.missingBlob"), String(rep.missingBlob)],
      [t("health.digestMismatch"), String(rep.digestMismatch)], [t("health.unreadable"), String(rep.unreadable)], [t("health.bytesRead"), bytes(rep.bytesRead)],
      [t("health.duration"), `${rep.durationMs} ms`]);
    if (rep.upstream) facts.push([t("proxy.upstream"), t("proxy." + rep.upstream.state)]);
    if (rep.problems && rep.problems.length) {
      problems = [h("h3", { text: t("health.problems") }),
        table([t("health.path"), t("health.blob"), t("health.problem")], rep.problems.map((p) => [h("code", { text: p.path }), h("code", { text: p.blobDigest }), tr("health." + p.problem, p.problem)]), [1]),
        rep.problemsNotListed ? h("p", { class: "muted", text: t("health.more", rep.problemsNotListed) }) : null];
    }
  }
  return h("div", { class: "card", id: "health-check" }, h("h2", { text: t("health.title") }), h("p", { class: "muted", text: t("health.explain") }),
    factList(facts), problems, h("div", { class: "actions" }, toggle));
}

/// Where Docker clients reach repository `name` (`full`: its configuration, `{}` when the
/// caller may not read it): its own port on this host when it has one, else this host with the
/// repository's name as the first path segment (which reaches every repository).
function dockerAddress(full, name) {
  const port = full.docker && full.docker.httpPort;
  const server = port ? `${location.hostname}:${port}` : location.host;
  return { port, server, reg: port ? server : `${location.host}/${name}` };
}

async function renderUsage(name) {
  const r = await api("GET", `/repositories/${encodeURIComponent(name)}`);
  const full = await api("GET", `/repositories/${r.format}/${r.type}/${encodeURIComponent(name)}`).catch(() => ({}));
  const host = location.host, scheme = location.protocol.replace(":", "");
  const base = `${scheme}://${host}/repository/${name}/`;
  const user = state.user || "USER";
  const writes = r.type === "hosted" || (r.type === "group" && full.group && full.group.writableMember);
  const tokenLink = h("p", { class: "muted" }, t("usage.token") + " ", h("a", { href: "#/tokens", text: t("nav.tokens") }));
  const blocks = [];
  if (r.format === "docker") {
    const { port, server, reg } = dockerAddress(full, name);
    const lines = [`docker login ${server} -u ${user}`];
    if (writes) lines.push(`docker tag alpine:3 ${reg}/team/alpine:3`, `docker push ${reg}/team/alpine:3`);
    lines.push(r.type === "proxy" ? `docker pull ${reg}/library/alpine:3` : `docker pull ${reg}/team/alpine:3`);
    blocks.push(pre(lines.join("\n")));
    // A Docker Hub proxy on its own port can be the daemon's mirror: plain `docker pull alpine` goes through it.
    if (r.type === "proxy" && port && /docker\.io/.test((full.proxy && full.proxy.remoteUrl) || "")) {
      blocks.push(h("h2", { text: t("usage.mirror") }), pre(`{ "registry-mirrors": ["${scheme}://${server}"] }`));
    }
    if (scheme === "http") {
      blocks.push(h("p", { class: "muted", text: t("usage.insecure") }), pre(`{ "insecure-registries": ["${server}"] }`));
    } else {
      blocks.push(h("p", { class: "muted", text: t("usage.certs") }), pre(`/etc/docker/certs.d/${server}/ca.crt`));
    }
  } else if (r.format === "pypi") {
    const index = `${scheme}://${user}:PASSWORD@${host}/repository/${name}/simple/`;
    const trusted = scheme === "http" ? `\ntrusted-host = ${location.hostname}` : "";
    blocks.push(h("h2", { text: "pip.conf" }), pre(`[global]\nindex-url = ${index}${trusted}`));
    blocks.push(h("h2", { text: "uv" }), pre(`export UV_INDEX_URL=${index}\nuv pip install requests`));
    blocks.push(h("h2", { text: "pyproject.toml (uv)" }), pre(`[[tool.uv.index]]\nname = "wharf"\nurl = "${scheme}://${host}/repository/${name}/simple/"\ndefault = true`));
    if (writes) {
      blocks.push(h("h2", { text: "twine (.pypirc)" }), pre(`[distutils]\nindex-servers = wharf\n\n[wharf]\nrepository = ${base}\nusername = ${user}`));
      blocks.push(h("h2", { text: "uv publish" }), pre(`uv publish --publish-url ${base} --username ${user}`));
    }
    if (scheme === "http") blocks.push(h("p", { class: "muted", text: t("usage.trustedHost") }));
  } else if (r.format === "npm") {
    // An example package this repository can serve: a proxy's (or a group's) from upstream,
    // a hosted one's own.
    const pkg = r.type === "hosted" ? "your-package" : "lodash";
    blocks.push(h("h2", { text: ".npmrc" }), pre(`registry=${base}\n//${host}/repository/${name}/:_authToken=TOKEN`), tokenLink);
    const lines = [`npm login --auth-type=legacy --registry ${base}`, `npm install ${pkg}`];
    if (writes) lines.push(`npm publish --registry ${base}`);
    blocks.push(pre(lines.join("\n")));
    blocks.push(h("h2", { text: "yarn (.yarnrc.yml)" }), pre(`npmRegistryServer: "${base}"\nnpmAuthToken: "TOKEN"${scheme === "http" ? `\nunsafeHttpWhitelist:\n  - "${location.hostname}"` : ""}`));
  }
  show(h("h1", { text: t("usage.title", name) }), ...blocks, h("p", {}, h("a", { href: "#/", text: t("back") })));
}

// ---- browse and search -----------------------------------------------------------------------

/// A server-paged list: `load(token)` fetches a page ({items, continuationToken}), `draw(items)`
/// makes its content. Previous pages are remembered by their tokens.
function pager(load, draw) {
  const box = h("div", { class: "paged" });
  const tokens = [null];
  let at = 0;
  const go = async () => {
    const page = await load(tokens[at]);
    tokens[at + 1] = page.continuationToken || null;
    const prev = h("button", { type: "button", class: "secondary", text: t("page.prev"), disabled: at === 0 });
    const next = h("button", { type: "button", class: "secondary", text: t("page.next"), disabled: !page.continuationToken });
    prev.addEventListener("click", () => { at -= 1; go().catch(failure); });
    next.addEventListener("click", () => { at += 1; go().catch(failure); });
    box.replaceChildren(draw(page.items || []), h("div", { class: "actions" }, prev, next, h("span", { class: "muted", text: t("page.at", at + 1) })));
  };
  return { box, reload: () => { tokens.length = 1; at = 0; return go(); } };
}

/// A text input that calls `changed` once typing pauses.
function searchInput(placeholder, changed) {
  const input = h("input", { type: "search", placeholder });
  let timer = null;
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(changed, 250); });
  return input;
}

const fullName = (c) => (c.group ? `${c.group}/${c.name}` : c.name);
const qs = (params) => Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
const browseHref = (repo, name) => `#/browse/${encodeURIComponent(repo)}/${name.split("/").map(encodeURIComponent).join("/")}`;

/// Repository → component names (paged and filtered on the server) → versions (newest first)
/// → files.
async function renderBrowse(name, component) {
  const repos = await api("GET", "/repositories");
  const pick = h("select", { "aria-label": t("browse.pick") }, h("option", { value: "", text: "—" }), repos.map((r) => h("option", { value: r.name, text: `${r.name} (${r.format} ${tr("kind." + r.type, r.type)})`, selected: r.name === name })));
  pick.addEventListener("change", () => { location.hash = `#/browse/${encodeURIComponent(pick.value)}`; });
  const nodes = [h("h1", { text: component ? `${name} / ${component}` : t("browse.title") }), field(t("browse.pick"), pick, "repository")];
  const repo = repos.find((r) => r.name === name) || {};
  const many = repo.type === "group";
  if (name && !component) {
    const filter = searchInput(t("search"), () => list.reload().catch(failure));
    const list = pager(
      // A part of the name (the database narrows names by it), not a keyword (which would also
      // look at every version).
      (token) => api("GET", "/search/names?" + qs({ repository: name, name: filter.value.trim() ? `*${filter.value.trim()}*` : "", continuationToken: token })),
      (items) => table(many ? [t("name"), t("version"), t("repository")] : [t("name"), t("version")], items.map((c) => {
        const row = [h("a", { href: browseHref(name, fullName(c)), text: fullName(c) }), String(c.components)];
        if (many) row.push(c.repository);
        return row;
      })));
    nodes.push(field(t("search"), filter, "search"), list.box);
    await list.reload();
  } else if (name) {
    const list = pager(
      (token) => api("GET", "/search?" + qs({ repository: name, name: component, sort: "version", continuationToken: token })),
      (items) => table([t("version"), t("files"), t("digest"), t("uploaded"), t("uploader"), t("actions")], items.map((c) => versionRow(c, repo, () => list.reload())), [2, 3, 4]));
    nodes.push(list.box, h("p", {}, h("a", { href: `#/browse/${encodeURIComponent(name)}`, text: t("back") })));
    await list.reload();
  }
  show(...nodes);
}

/// Yank (or unyank, when `yanked`) a PyPI release, then `redraw`.
function yankButton(c, yanked, redraw) {
  const y = h("button", { type: "button", class: "secondary", text: yanked ? t("unyank") : t("yank") });
  y.addEventListener("click", async () => {
    try {
      if (yanked) await api("DELETE", `/components/${encodeURIComponent(c.id)}/yank`);
      else await api("POST", `/components/${encodeURIComponent(c.id)}/yank`, { reason: "yanked from the console" });
      await redraw();
    } catch (e) { failure(e); }
  });
  return y;
}

/// One version of a component: its files, first digest, upload, and what an admin may do.
function versionRow(c, repo, redraw) {
  const assets = c.assets || [];
  const first = assets[0] || {};
  const yanked = assets.find((a) => a.attributes && typeof a.attributes.yanked === "string");
  const cells = [
    h("span", {}, h("a", { href: `#/component/${encodeURIComponent(c.id)}`, text: c.version }), yanked ? " " : null, yanked ? h("span", { class: "tag", title: yanked.attributes.yanked, text: t("yanked") }) : null),
    h("span", {}, assets.map((a) => h("div", {}, a.downloadUrl ? h("a", { href: a.downloadUrl, text: a.path.split("/").pop() }) : a.path.split("/").pop(), " ", h("span", { class: "muted", text: bytes(a.fileSize) })))),
    h("code", { text: (first.checksum && first.checksum.sha256 || "").slice(0, 16) }),
    when(first.blobCreated || first.lastModified), first.uploader || "",
  ];
  const acts = h("span", {});
  if (state.admin) {
    const del = h("button", { type: "button", class: "danger", text: t("delete") });
    del.addEventListener("click", async () => {
      if (!confirm(t("confirm.delete", `${fullName(c)} ${c.version}`))) return;
      try { await api("DELETE", `/components/${encodeURIComponent(c.id)}`); await redraw(); } catch (e) { failure(e); }
    });
    acts.append(del);
    if (c.format === "pypi") acts.append(" ", yankButton(c, yanked, redraw));
  }
  cells.push(acts);
  return cells;
}

/// Search across every repository the user may read (Nexus's /search), paged and sorted on
/// the server.
async function renderSearch() {
  const repos = await api("GET", "/repositories");
  const formats = [...new Set(repos.map((r) => r.format))].sort();
  const q = h("input", { type: "search" });
  const name = h("input", { type: "text", placeholder: "flask*" });
  const version = h("input", { type: "text", placeholder: "1.*" });
  const format = h("select", {}, h("option", { value: "", text: t("search.any") }), formats.map((f) => h("option", { value: f, text: f })));
  const repository = h("select", {}, h("option", { value: "", text: t("search.any") }), repos.map((r) => h("option", { value: r.name, text: r.name })));
  const sort = h("select", {}, h("option", { value: "", text: t("search.sort.none") }), ["name", "version", "repository"].map((s) => h("option", { value: s, text: t("search.sort." + s) })));
  const direction = h("select", {}, h("option", { value: "", text: t("search.dir.default") }), h("option", { value: "asc", text: t("search.dir.asc") }), h("option", { value: "desc", text: t("search.dir.desc") }));
  const error = h("p", { class: "error", role: "alert" });
  const list = pager(
    (token) => api("GET", "/search?" + qs({ q: q.value.trim(), name: name.value.trim(), version: version.value.trim(), format: format.value, repository: repository.value, sort: sort.value, direction: sort.value ? direction.value : "", continuationToken: token })),
    (items) => table([t("name"), t("version"), t("repository"), t("format"), t("uploaded"), t("size")], items.map((c) => {
      const assets = c.assets || [];
      return [h("a", { href: browseHref(c.repository, fullName(c)), text: fullName(c) }), h("a", { href: `#/component/${encodeURIComponent(c.id)}`, text: c.version }), c.repository, c.format,
        when((assets[0] || {}).blobCreated), bytes(assets.reduce((n, a) => n + (a.fileSize || 0), 0))];
    }), [3, 4, 5]));
  const form = h("form", { class: "search-form" },
    field(t("search.q"), q, "q"), field(t("name"), name, "name"), field(t("version"), version, "version"),
    field(t("format"), format, "format"), field(t("repository"), repository, "repository"),
    field(t("search.sort"), sort, "sort"), field(t("search.dir"), direction, "direction"),
    h("div", { class: "actions" }, h("button", { type: "submit", text: t("search") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try { await list.reload(); } catch (e) { if (!placeErrors(form, e)) failure(e); }
  });
  show(h("h1", { text: t("nav.search") }), form, error, list.box);
  await list.reload();
}

// ---- component detail ------------------------------------------------------------------------

/// Text an uploader wrote (a summary, a description, a name): shown as written, in whatever
/// language it is, and marked as not for translation.
function userText(text) { return text ? h("span", { translate: "no", text: String(text) }) : ""; }

/// A value to copy (a checksum, a digest): as code, with a button that copies it.
function copyable(text, label) { return h("span", { class: "copyable" }, h("code", { text }), " ", copyButton(text, label)); }

function codes(values) { return values.length ? h("span", {}, values.map((v, i) => [i ? ", " : null, h("code", { text: v })])) : ""; }

/// A manifest's config and layers, in the order a pull fetches them.
function layerTable(image) {
  const rows = [];
  if (image.config) rows.push([t("detail.config"), h("code", { text: image.config.mediaType || "" }), h("code", { text: image.config.digest }), bytes(image.config.size)]);
  (image.layers || []).forEach((l, i) => rows.push([String(i + 1), h("code", { text: l.mediaType || "" }), h("code", { text: l.digest }), bytes(l.size)]));
  return table([t("detail.layer"), t("detail.mediaType"), t("digest"), t("size")], rows, [1]);
}

function platformName(p) { return [p.os, p.architecture, p.variant].filter(Boolean).join("/") || "—"; }

function dockerDetails(c, d, address) {
  const nodes = [h("h2", { text: t("detail.pull") }), pre(`docker pull ${address.reg}/${c.name}:${c.version}`)];
  if (d.manifest) {
    nodes.push(factList([[t("detail.manifest"), copyable(d.manifest.digest, t("detail.copyOf", d.manifest.digest))],
      [t("detail.mediaType"), h("code", { text: d.manifest.mediaType || "" })]]));
  }
  if (d.unreadable) nodes.push(h("p", { class: "muted", text: t("detail.unreadable." + d.unreadable) }));
  if (d.platforms) {
    nodes.push(h("h2", { text: t("detail.platforms") }), table([t("detail.platform"), t("digest"), t("detail.totalSize")], d.platforms.map((p) => [
      h("code", { text: platformName(p) }), h("code", { text: p.digest }),
      p.present === false ? t("detail.notHere") : p.unreadable ? t("detail.unreadable." + p.unreadable) : bytes(p.totalSize),
    ])));
    for (const p of d.platforms.filter((x) => x.layers)) nodes.push(h("h3", {}, t("detail.layersOf") + " ", h("code", { text: platformName(p) })), layerTable(p));
  } else if (d.layers) {
    nodes.push(h("h2", { text: t("detail.layers") }), layerTable(d));
  }
  return nodes;
}

function npmDetails(d) {
  const deps = Object.entries(d.dependencies || {});
  const nodes = [factList([
    [t("detail.distTags"), codes(d.distTags || [])],
    [t("detail.description"), userText(d.description)],
    [t("detail.license"), userText(d.license)],
    [t("detail.published"), when(d.published)],
    [t("detail.dependencies"), String(d.dependencyCount ?? deps.length)],
    ...(d.deprecated ? [[t("detail.deprecated"), userText(d.deprecated)]] : []),
  ])];
  if (d.document === "missing") nodes.push(h("p", { class: "muted", text: t("detail.noDocument") }));
  if (deps.length) nodes.push(h("h2", { text: t("detail.dependencies") }), table([t("name"), t("version")], deps.map(([n, v]) => [h("code", { text: n }), h("code", { text: String(v) })])));
  nodes.push(h("h2", { text: t("detail.readme") }));
  if (d.readme) {
    if (d.readme.truncated) nodes.push(h("p", { class: "muted", text: t("detail.readmeCut", bytes(d.readme.size), bytes(d.readme.text.length)) }));
    // Whatever the README holds (markup, scripts) is text here: it is the uploader's, not ours.
    nodes.push(h("pre", { class: "readme", translate: "no", tabindex: "0", "aria-label": t("detail.readme") }, d.readme.text));
  } else {
    nodes.push(h("p", { class: "muted", text: t("detail.noReadme") }));
  }
  return nodes;
}

function pypiDetails(c, d) {
  const byName = new Map((c.assets || []).map((a) => [a.path.split("/").pop(), a]));
  const nodes = [factList([
    [t("detail.summary"), userText(d.summary)],
    [t("detail.requiresPython"), d.requiresPython ? h("code", { text: d.requiresPython }) : ""],
    [t("detail.author"), userText(d.author)],
    [t("detail.license"), userText(d.license)],
    [t("detail.requiresDist"), codes(d.requiresDist || [])],
  ])];
  const rows = (d.files || []).map((f) => {
    const a = byName.get(f.filename) || {};
    return [a.downloadUrl ? h("a", { href: a.downloadUrl }, h("code", { text: f.filename })) : h("code", { text: f.filename }),
      h("code", { text: f.filetype || "" }), bytes(f.size), f.requiresPython ? h("code", { text: f.requiresPython }) : "—", when(f.uploadTime),
      f.yanked === null || f.yanked === undefined ? "—" : h("span", { class: "tag", title: f.yanked || null, text: t("yanked") })];
  });
  nodes.push(h("h2", { text: t("files") }), table([t("detail.file"), t("detail.filetype"), t("size"), t("detail.requiresPython"), t("uploaded"), t("status")], rows, [1, 3]));
  return nodes;
}

/// One component: what every format has (checksums, total size, who uploaded it from where
/// and when, downloads) and what its format adds (Docker platforms, layers and the pull
/// command; npm dist-tags and README; PyPI summary, requires-python and files).
async function renderComponent(id) {
  const c = await api("GET", `/components/${encodeURIComponent(id)}`);
  const repo = await api("GET", `/repositories/${encodeURIComponent(c.repository)}`);
  const d = c.details || {};
  const assets = c.assets || [];
  const full = fullName(c);
  const browse = browseHref(c.repository, full);
  const distinct = (xs) => [...new Set(xs.filter(Boolean))];
  const created = Math.min(...assets.map((a) => a.blobCreated));
  const modified = Math.max(...assets.map((a) => a.lastModified));
  const downloaded = assets.map((a) => a.lastDownloaded).filter(Boolean).sort().pop();
  const yanked = assets.some((a) => a.attributes && typeof a.attributes.yanked === "string");
  const facts = factList([
    [t("repository"), h("a", { href: `#/browse/${encodeURIComponent(c.repository)}`, text: c.repository })],
    [t("format"), c.format],
    [t("detail.totalSize"), bytes(d.totalSize ?? assets.reduce((n, a) => n + (a.fileSize || 0), 0))],
    [t("uploaded"), when(created)],
    ...(modified > created ? [[t("detail.modified"), when(modified)]] : []),
    [t("uploader"), userText(distinct(assets.map((a) => a.uploader)).join(", "))],
    [t("detail.address"), codes(distinct(assets.map((a) => a.uploaderIp)))],
    [t("detail.lastDownloaded"), downloaded ? when(downloaded) : t("detail.never")],
    [t("detail.downloads"), String(assets.reduce((n, a) => n + (a.downloadCount || 0), 0))],
  ]);
  const sums = [];
  for (const a of assets) {
    for (const [algo, value] of Object.entries(a.checksum || {})) {
      if (value) sums.push([h("code", { text: a.path.split("/").pop() }), h("code", { text: algo }), copyable(value, t("detail.copyOf", `${algo} ${a.path.split("/").pop()}`))]);
    }
  }
  let formatNodes = [];
  if (c.format === "docker") {
    const config = state.admin ? await api("GET", `/repositories/docker/${repo.type}/${encodeURIComponent(c.repository)}`).catch(() => ({})) : {};
    formatNodes = dockerDetails(c, d, dockerAddress(config, c.repository));
  } else if (c.format === "npm") {
    formatNodes = npmDetails(d);
  } else if (c.format === "pypi") {
    formatNodes = pypiDetails(c, d);
  }
  const acts = h("div", { class: "actions" });
  if (state.admin) {
    const del = h("button", { type: "button", class: "danger", text: t("delete") });
    del.addEventListener("click", async () => {
      if (!confirm(t("confirm.delete", `${full} ${c.version}`))) return;
      try {
        await api("DELETE", `/components/${encodeURIComponent(c.id)}`);
        state.flash = t("component.deleted", `${full} ${c.version}`);
        location.hash = browse;
      } catch (e) { failure(e); }
    });
    if (c.format === "pypi") acts.append(yankButton(c, yanked, () => renderComponent(id)), " ");
    acts.append(del);
  }
  show(h("h1", { translate: "no" }, full, " ", yanked ? h("span", {}, c.version, " ", h("span", { class: "tag", translate: "yes", text: t("yanked") })) : c.version),
    facts, acts,
    h("h2", { text: t("detail.checksums") }), table([t("detail.file"), t("detail.algorithm"), t("detail.value")], sums),
    ...formatNodes,
    h("p", {}, h("a", { href: browse, text: t("back") })));
}

// ---- users, roles, LDAP, tokens, audit ---------------------------------------------------------

/// Role ids as a list of checkboxes (a multi-select loses its picks to a single click).
function rolePicker(roles, chosen, label) {
  const boxes = roles.map((r) => h("input", { type: "checkbox", value: r.id, checked: chosen.includes(r.id) }));
  const el = h("fieldset", { class: "checks" }, h("legend", { text: label }),
    roles.map((r, i) => h("label", { title: roleDescription(r) }, boxes[i], " ", r.id)));
  return { el, value: () => boxes.filter((b) => b.checked).map((b) => b.value) };
}

async function renderUsers(editing) {
  const [users, roles] = await Promise.all([api("GET", "/security/users"), api("GET", "/security/roles")]);
  const inputs = {};
  const mk = (key, label, attrs) => { inputs[key] = h("input", Object.assign({ type: "text" }, attrs || {})); return field(label, inputs[key], key); };
  const picker = rolePicker(roles, [], t("roles"));
  const form = h("form", { class: "card" }, h("h2", { text: t("users.new") }),
    mk("userId", t("users.id"), { required: true }), mk("firstName", t("users.first")), mk("lastName", t("users.last")),
    mk("emailAddress", t("email"), { type: "email" }), mk("password", t("password"), { type: "password", required: true, autocomplete: "new-password", minlength: 8 }),
    picker.el, h("div", { class: "error", "data-error-for": "roles", "aria-live": "polite" }),
    h("div", { class: "actions" }, h("button", { type: "submit", text: t("create") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = (k) => inputs[k].value;
    try {
      await api("POST", "/security/users", { userId: v("userId"), password: v("password"), emailAddress: v("emailAddress"), firstName: v("firstName"),
        lastName: v("lastName"), status: "active", roles: picker.value() });
      state.flash = t("users.created", v("userId"));
      await renderUsers();
    } catch (e) { if (!placeErrors(form, e)) failure(e); }
  });
  const rows = users.map((u) => {
    const edit = h("a", { href: `#/users/${encodeURIComponent(u.userId)}`, text: t("edit") });
    const name = [u.firstName, u.lastName].filter(Boolean).join(" ");
    return [u.userId, name, u.emailAddress || "", u.source === "LDAP" ? "LDAP" : t("users.local"), u.status === "disabled" ? t("status.disabled") : t("status.active"),
      (u.roles || []).join(", "), edit];
  });
  const nodes = [h("h1", { text: t("users.title") }), table([t("users.id"), t("name"), t("email"), t("users.source"), t("status"), t("roles"), t("actions")], rows, [1, 2, 3])];
  const u = editing && users.find((x) => x.userId === editing);
  if (u) nodes.push(userEditor(u, roles));
  else nodes.push(form);
  show(...nodes);
}

/// One user's settings, roles and a new password, each saved by its own button.
function userEditor(u, roles) {
  const inputs = {};
  const mk = (key, label, attrs) => { inputs[key] = h("input", Object.assign({ type: "text", value: u[key] || "" }, attrs || {})); return field(label, inputs[key], key); };
  const status = h("select", {}, ["active", "disabled"].map((x) => h("option", { value: x, text: t("status." + x), selected: u.status === x })));
  const picker = rolePicker(roles, u.roles || [], t("roles"));
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card" }, h("h2", { text: `${t("edit")} ${u.userId}` }),
    mk("firstName", t("users.first")), mk("lastName", t("users.last")), mk("emailAddress", t("email"), { type: "email" }),
    field(t("status"), status, "status"), picker.el, out,
    h("div", { class: "actions" }, h("button", { type: "submit", text: t("save") }),
      h("a", { href: "#/users", text: t("cancel") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = (k) => inputs[k].value;
    try {
      await api("PUT", `/security/users/${encodeURIComponent(u.userId)}`, { userId: u.userId, firstName: v("firstName"), lastName: v("lastName"),
        emailAddress: v("emailAddress"), status: status.value, source: u.source, roles: picker.value() });
      state.flash = t("users.saved", u.userId);
      location.hash = "#/users";
    } catch (e) { if (!placeErrors(form, e)) out.replaceChildren(failed(e)); }
  });
  // Another user's password is set here; one's own is changed on My account (it needs the current one).
  const pw = h("input", { type: "password", autocomplete: "new-password", minlength: 8 });
  const pwOut = h("div", { "aria-live": "polite" });
  const pwForm = h("form", { class: "card" }, h("h2", { text: t("users.setPassword") }), field(t("password.new"), pw, "newPassword"), pwOut,
    h("div", { class: "actions" }, h("button", { type: "submit", text: t("users.setPassword") })));
  pwForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("PUT", `/security/users/${encodeURIComponent(u.userId)}/change-password`, pw.value);
      pw.value = "";
      pwOut.replaceChildren(notice(t("password.changed")));
    } catch (e) { pwOut.replaceChildren(failed(e)); }
  });
  const del = h("button", { type: "button", class: "danger", text: t("delete"), disabled: u.userId === state.user });
  del.addEventListener("click", async () => {
    if (!confirm(t("confirm.delete", u.userId))) return;
    try {
      await api("DELETE", `/security/users/${encodeURIComponent(u.userId)}`);
      state.flash = t("users.deleted", u.userId);
      location.hash = "#/users";
    } catch (e) { out.replaceChildren(failed(e)); }
  });
  const own = u.userId === state.user;
  return h("div", {}, form, u.source === "LDAP" || own ? null : pwForm, h("div", { class: "actions" }, del));
}

/// The signed-in user's own page: who they are, their roles, their password and their tokens.
async function renderAccount() {
  const me = await api("GET", "/session");
  const facts = [[t("users.id"), me.userId], [t("users.source"), me.source === "LDAP" ? "LDAP" : t("users.local")]];
  if (me.source !== "LDAP") {
    facts.push([t("name"), [me.firstName, me.lastName].filter(Boolean).join(" ")], [t("email"), me.emailAddress || ""], [t("roles"), (me.roles || []).join(", ")]);
  }
  const nodes = [h("h1", { text: t("nav.account") }), factList(facts)];
  if (me.source !== "LDAP") {
    const cur = h("input", { type: "password", autocomplete: "current-password", required: true });
    const np = h("input", { type: "password", autocomplete: "new-password", required: true, minlength: 8 });
    const again = h("input", { type: "password", autocomplete: "new-password", required: true, minlength: 8 });
    const out = h("div", { "aria-live": "polite" });
    const form = h("form", { class: "card" }, h("h2", { text: t("password.change") }), field(t("password.current"), cur, "currentPassword"),
      field(t("password.new"), np, "newPassword"), field(t("password.again"), again, "again"), out,
      h("div", { class: "actions" }, h("button", { type: "submit", text: t("password.change") })));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (np.value !== again.value) { out.replaceChildren(notice(t("password.mismatch"), true)); return; }
      try {
        await api("PUT", `/security/users/${encodeURIComponent(me.userId)}/change-password`, { currentPassword: cur.value, newPassword: np.value });
        // The change ends every session, this one too.
        Object.assign(state, { user: null, admin: false, csrf: null, loginNotice: t("password.changedSignIn") });
        location.hash = "#/";
        renderLogin();
      } catch (e) { out.replaceChildren(notice(e.status === 401 || e.status === 403 ? t("password.wrongCurrent") : e.message, true)); }
    });
    nodes.push(form);
  } else {
    nodes.push(h("p", { class: "muted", text: t("account.ldap") }));
  }
  nodes.push(h("p", {}, h("a", { href: "#/tokens", text: t("nav.tokens") })));
  show(...nodes);
}

/// Privileges chosen by type: a repository privilege from format, repository and action, or
/// an application privilege by name; the chosen ones listed with their descriptions.
function privilegePicker(known, repos, chosen) {
  let list = [...chosen];
  const describe = (name) => privilegeDescription(known.find((p) => p.name === name));
  const ul = h("ul", { class: "privs" });
  const draw = () => ul.replaceChildren(...list.map((name, i) => {
    const out = h("button", { type: "button", class: "secondary", text: "✕", "aria-label": t("member.remove", name) });
    out.addEventListener("click", () => { list.splice(i, 1); draw(); });
    return h("li", {}, h("code", { text: name }), " ", h("span", { class: "muted", text: describe(name) }), " ", out);
  }));
  const format = h("select", { "aria-label": t("format") }, ["*", "docker", "pypi", "npm"].map((f) => h("option", { value: f, text: f === "*" ? t("cleanup.allFormats") : f })));
  const repo = h("select", { "aria-label": t("repository") });
  const fillRepos = () => repo.replaceChildren(h("option", { value: "*", text: t("privs.allRepos") }),
    ...repos.filter((r) => format.value === "*" || r.format === format.value).map((r) => h("option", { value: r.name, text: r.name })));
  format.addEventListener("change", fillRepos);
  fillRepos();
  const action = h("select", { "aria-label": t("privs.action") }, ["read", "browse", "add", "edit", "delete", "*"].map((a) => h("option", { value: a, text: t("privs." + a) })));
  const addRepo = h("button", { type: "button", class: "secondary", text: t("add") });
  addRepo.addEventListener("click", () => {
    const name = `nx-repository-view-${format.value}-${repo.value}-${action.value}`;
    if (!list.includes(name)) list.push(name);
    draw();
  });
  const app = h("select", { "aria-label": t("privs.application") }, known.filter((p) => p.type === "application").map((p) => h("option", { value: p.name, text: `${p.name} — ${privilegeDescription(p)}` })));
  const addApp = h("button", { type: "button", class: "secondary", text: t("add") });
  addApp.addEventListener("click", () => { if (app.value && !list.includes(app.value)) list.push(app.value); draw(); });
  draw();
  const el = h("fieldset", { class: "picker" }, h("legend", { text: t("privileges") }), ul,
    h("div", { class: "actions" }, t("privs.repository"), format, repo, action, addRepo),
    h("div", { class: "actions" }, t("privs.application"), app, addApp),
    h("div", { class: "error", "data-error-for": "privileges", "aria-live": "polite" }));
  return { el, value: () => [...list] };
}

async function renderRoles(editing) {
  const [roles, known, repos] = await Promise.all([api("GET", "/security/roles"), api("GET", "/security/privileges").catch(() => []), api("GET", "/repositories")]);
  const current = editing ? roles.find((r) => r.id === editing) : null;
  const id = h("input", { type: "text", required: true, value: current ? current.id : "", disabled: !!current });
  const description = h("input", { type: "text", value: current ? current.description || "" : "" });
  const picker = privilegePicker(known, repos, current ? current.privileges || [] : []);
  const nested = rolePicker(roles.filter((r) => !current || r.id !== current.id), current ? current.roles || [] : [], t("roles.nested"));
  const form = h("form", { class: "card" }, h("h2", { text: current ? `${t("edit")} ${current.id}` : t("roles.new") }),
    field("ID", id, "id"), field(t("roles.description"), description, "description"), picker.el, nested.el,
    h("div", { class: "actions" }, h("button", { type: "submit", text: current ? t("save") : t("create") }), current ? h("a", { href: "#/roles", text: t("cancel") }) : null));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { id: id.value, name: id.value, description: description.value, privileges: picker.value(), roles: nested.value() };
    try {
      if (current) await api("PUT", `/security/roles/${encodeURIComponent(current.id)}`, body);
      else await api("POST", "/security/roles", body);
      state.flash = t(current ? "roles.saved" : "roles.created", id.value);
      if (current) location.hash = "#/roles"; else await renderRoles();
    } catch (e) { if (!placeErrors(form, e)) failure(e); }
  });
  const rows = roles.map((r) => {
    const builtin = r.id === "nx-admin" || r.id === "nx-anonymous";
    const out = h("span", { "aria-live": "polite" });
    const del = h("button", { type: "button", class: "danger", text: t("delete"), disabled: builtin });
    del.addEventListener("click", async () => {
      if (!confirm(t("confirm.delete", r.id))) return;
      try { await api("DELETE", `/security/roles/${encodeURIComponent(r.id)}`); state.flash = t("roles.deleted", r.id); await renderRoles(); } catch (e) { out.textContent = e.message; }
    });
    const edit = r.readOnly ? null : h("a", { href: `#/roles/${encodeURIComponent(r.id)}`, text: t("edit") });
    return [r.id, roleDescription(r), h("span", {}, (r.privileges || []).map((p) => h("div", {}, h("code", { text: p })))), (r.roles || []).join(", "), h("span", {}, edit, " ", del, " ", out)];
  });
  show(h("h1", { text: t("roles.title") }), table(["ID", t("roles.description"), t("privileges"), t("roles.nested"), t("actions")], rows, [1, 3]), form);
}

/// An LDAP server's settings in Nexus's shape, grouped as Nexus's form groups them: the
/// connection, where users are and what their attributes are called, and how groups map to roles.
const LDAP_FIELDS = [
  ["ldap.connection", [["name", "text", { required: true }], ["protocol", ["ldap", "ldaps"]], ["host", "text", { required: true }], ["port", "number", { required: true }],
    ["searchBase", "text", { required: true }], ["authScheme", ["NONE", "SIMPLE"]], ["authUsername", "text"], ["authPassword", "password", { autocomplete: "off" }],
    ["startTls", "checkbox"], ["connectionTimeoutSeconds", "number"], ["readTimeoutSeconds", "number"]]],
  ["ldap.users", [["userBaseDn", "text"], ["userSubtree", "checkbox"], ["userObjectClass", "text"], ["userLdapFilter", "text"], ["userIdAttribute", "text"],
    ["userRealNameAttribute", "text"], ["userEmailAddressAttribute", "text"]]],
  ["ldap.groups", [["ldapGroupsAsRoles", "checkbox"], ["groupType", ["static", "dynamic"]], ["groupBaseDn", "text"], ["groupSubtree", "checkbox"],
    ["groupObjectClass", "text"], ["groupIdAttribute", "text"], ["groupMemberAttribute", "text"], ["groupMemberFormat", "text"], ["userMemberOfAttribute", "text"]]],
];
const LDAP_DEFAULTS = { protocol: "ldap", port: 389, authScheme: "SIMPLE", connectionTimeoutSeconds: 30, readTimeoutSeconds: 30, userBaseDn: "ou=people",
  userSubtree: true, userObjectClass: "inetOrgPerson", userLdapFilter: "", userIdAttribute: "uid", userRealNameAttribute: "cn", userEmailAddressAttribute: "mail",
  ldapGroupsAsRoles: true, groupType: "static", groupBaseDn: "ou=groups", groupSubtree: true, groupObjectClass: "groupOfNames", groupIdAttribute: "cn",
  groupMemberAttribute: "member", groupMemberFormat: "${dn}", userMemberOfAttribute: "memberOf" };

function ldapForm(current, onSaved) {
  const base = Object.assign({}, LDAP_DEFAULTS, current || {});
  const inputs = {};
  const sections = LDAP_FIELDS.map(([title, fields]) => h("fieldset", { class: "group" }, h("legend", { text: t(title) }), fields.map(([key, kind, attrs]) => {
    let input;
    if (Array.isArray(kind)) input = h("select", {}, kind.map((v) => h("option", { value: v, text: t(`ldap.${key}.${v}`) === `ldap.${key}.${v}` ? v : t(`ldap.${key}.${v}`), selected: String(base[key]) === v })));
    else if (kind === "checkbox") input = h("input", { type: "checkbox", checked: !!base[key] });
    else input = h("input", Object.assign({ type: kind, value: key === "authPassword" ? "" : base[key] ?? "" }, attrs || {}));
    if (key === "name" && current) input.disabled = true;
    if (key === "authPassword" && current) input.placeholder = t("ldap.keepPassword");
    inputs[key] = input;
    return kind === "checkbox" ? h("div", {}, h("label", {}, input, " ", t("ldap." + key))) : field(t("ldap." + key), input, key);
  })));
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card" }, h("h2", { text: current ? `${t("edit")} ${current.name}` : t("ldap.new") }), ...sections, out,
    h("div", { class: "actions" }, h("button", { type: "submit", text: current ? t("save") : t("create") }), current ? h("a", { href: "#/ldap", text: t("cancel") }) : null));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = Object.assign({}, current || {});
    for (const k of ["order", "id", "readOnly"]) delete body[k];
    for (const [, fields] of LDAP_FIELDS) for (const [key, kind] of fields) {
      const i = inputs[key];
      body[key] = kind === "checkbox" ? i.checked : kind === "number" ? Number(i.value) : i.value;
    }
    for (const k of ["authUsername", "authPassword", "userLdapFilter"]) if (body[k] === "") body[k] = k === "userLdapFilter" ? "" : null;
    if (body.authScheme === "NONE") { body.authUsername = null; body.authPassword = null; }
    try {
      if (current) await api("PUT", `/security/ldap/${encodeURIComponent(current.name)}`, body);
      else await api("POST", "/security/ldap", body);
      onSaved(body.name);
    } catch (e) { if (!placeErrors(form, e)) out.replaceChildren(failed(e)); }
  });
  return form;
}

async function renderLdap(editing) {
  const servers = await api("GET", "/security/ldap");
  const editable = servers.filter((s) => !s.readOnly);
  const reorder = async (names) => {
    try { await api("POST", "/security/ldap/change-order", names); await renderLdap(); } catch (e) { failure(e); }
  };
  const rows = servers.map((s) => {
    const test = h("button", { type: "button", class: "secondary", text: t("ldap.test") });
    const out = h("span", { "aria-live": "polite" });
    test.addEventListener("click", async () => {
      try { const r = await api("POST", "/security/ldap/verify-connection", { server: s }); out.textContent = r.success ? "✓" : r.message; } catch (e) { out.textContent = e.message; }
    });
    const i = editable.indexOf(s);
    const move = (d) => {
      const names = editable.map((x) => x.name);
      [names[i], names[i + d]] = [names[i + d], names[i]];
      return reorder(names);
    };
    const up = h("button", { type: "button", class: "secondary", text: "↑", "aria-label": t("member.up", s.name), disabled: s.readOnly || i <= 0 });
    const down = h("button", { type: "button", class: "secondary", text: "↓", "aria-label": t("member.down", s.name), disabled: s.readOnly || i < 0 || i === editable.length - 1 });
    up.addEventListener("click", () => move(-1));
    down.addEventListener("click", () => move(1));
    const del = h("button", { type: "button", class: "danger", text: t("delete"), disabled: !!s.readOnly });
    del.addEventListener("click", async () => {
      if (!confirm(t("confirm.delete", s.name))) return;
      try { await api("DELETE", `/security/ldap/${encodeURIComponent(s.name)}`); await renderLdap(); } catch (e) { out.textContent = e.message; }
    });
    const edit = s.readOnly ? h("span", { class: "muted", text: t("ldap.fromConfig") }) : h("a", { href: `#/ldap/${encodeURIComponent(s.name)}`, text: t("edit") });
    return [String(s.order + 1), s.name, `${s.protocol}://${s.host}:${s.port}`, s.searchBase, h("span", {}, up, down, " ", edit, " ", test, " ", del, " ", out)];
  });
  // A login tried against a server: what wharf would make of that user.
  const which = h("select", {}, servers.map((s) => h("option", { value: s.name, text: s.name })));
  const user = h("input", { type: "text", autocomplete: "off" });
  const pass = h("input", { type: "password", autocomplete: "off" });
  const tried = h("div", { "aria-live": "polite" });
  const tryForm = h("form", { class: "card" }, h("h2", { text: t("ldap.testLogin") }), field(t("ldap.server"), which, "server"),
    field(t("ldap.testUser"), user, "testUser"), field(t("ldap.testPassword"), pass, "testPassword"), tried,
    h("div", { class: "actions" }, h("button", { type: "submit", text: t("ldap.testLogin") })));
  tryForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const s = servers.find((x) => x.name === which.value);
    try {
      const r = await api("POST", "/security/ldap/verify-login", { server: s, username: user.value, password: pass.value });
      tried.replaceChildren(r.success ? notice(`✓ ${r.user.id} → ${(r.roles || []).join(", ") || "—"}`) : notice(r.message, true));
    } catch (e) { tried.replaceChildren(failed(e)); }
  });
  const current = editing && servers.find((s) => s.name === editing && !s.readOnly);
  const saved = (name) => { state.flash = t("ldap.saved", name); location.hash = "#/ldap"; route(); };
  show(h("h1", { text: t("ldap.title") }), table(["#", t("name"), t("url"), t("ldap.searchBaseShort"), t("actions")], rows, [3]),
    servers.length ? tryForm : null, ldapForm(current || null, saved));
}

async function renderTokens() {
  const [tokens, repos] = await Promise.all([api("GET", "/security/tokens"), api("GET", "/repositories")]);
  const name = h("input", { type: "text" });
  const ro = h("input", { type: "checkbox" });
  const repo = h("select", {}, h("option", { value: "", text: "—" }), repos.map((r) => h("option", { value: r.name, text: r.name })));
  const days = h("input", { type: "number", min: "0", step: "any" });
  const shown = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card" }, h("h2", { text: t("tokens.new") }), field(t("name"), name, "name"), h("label", {}, ro, " ", t("readOnly")),
    field(t("repository"), repo, "repository"), field(t("expires"), days, "expiresInDays"), shown, h("div", { class: "actions" }, h("button", { type: "submit", text: t("create") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/security/tokens", { name: name.value, readOnly: ro.checked, repository: repo.value || null, expiresInDays: days.value ? Number(days.value) : null });
      await renderTokens();
      main().prepend(notice(t("tokens.shown")), pre(r.token));
    } catch (e) { if (!placeErrors(form, e)) failure(e); }
  });
  const rows = tokens.map((tk) => {
    const rv = h("button", { type: "button", class: "danger", text: t("revoke") });
    rv.addEventListener("click", async () => {
      if (!confirm(t("confirm.delete", tk.name || tk.prefix))) return;
      try { await api("DELETE", `/security/tokens/${encodeURIComponent(tk.id)}`); renderTokens(); } catch (e) { failure(e); }
    });
    return [tk.name, h("code", { text: tk.prefix + "…" }), tk.readOnly ? t("yes") : t("no"), tk.repository || "*", tk.expires || "", rv];
  });
  show(h("h1", { text: t("tokens.title") }), table([t("name"), "", t("readOnly"), t("repository"), t("expires"), t("actions")], rows, [4]), form);
}

async function renderAudit() {
  const actor = h("input", { type: "text" });
  const action = h("input", { type: "text", placeholder: "npm.*" });
  const repo = h("input", { type: "text" });
  const body = h("div", {});
  let token = null;
  let rows = [];
  async function load(more) {
    const q = new URLSearchParams();
    if (actor.value) q.set("actor", actor.value);
    if (action.value) q.set("action", action.value);
    if (repo.value) q.set("repository", repo.value);
    if (more && token) q.set("continuationToken", token);
    const page = await api("GET", "/audit?" + q.toString());
    token = page.continuationToken;
    rows = (more ? rows : []).concat(page.items.map((e) => [when(e.timestamp), e.actor || "", h("span", { title: e.action, text: tr("action." + e.action, e.action) }), e.repository || "", userText(e.object), e.address || ""]));
    const moreBtn = token ? h("button", { type: "button", class: "secondary", text: t("more") }) : null;
    if (moreBtn) moreBtn.addEventListener("click", () => load(true).catch(failure));
    body.replaceChildren(table([t("when"), t("who"), t("what"), t("repository"), t("object"), t("from")], rows, [5]), moreBtn || "");
  }
  const form = h("form", { class: "card" }, field(t("who"), actor, "actor"), field(t("what"), action, "action"), field(t("repository"), repo, "repository"),
    h("div", { class: "actions" }, h("button", { type: "submit", text: t("filter") })));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(false).catch(failure); });
  show(h("h1", { text: t("audit.title") }), form, body);
  await load(false);
}

// ---- blob stores, cleanup policies, tasks, system ----------------------------------------------

async function renderBlobStores() {
  const stores = await api("GET", "/blobstores");
  const rows = stores.map((st) => {
    const quota = st.softQuota ? `${t(st.softQuota.type === "spaceRemainingQuota" ? "quota.remaining" : "quota.used")} ${bytes(st.softQuota.limit)}` : "—";
    const del = h("button", { type: "button", class: "danger", text: t("delete") });
    const out = h("span", { "aria-live": "polite" });
    del.addEventListener("click", async () => {
      if (!confirm(t("confirm.delete", st.name))) return;
      try {
        await api("DELETE", `/blobstores/${encodeURIComponent(st.name)}`);
        state.flash = t("stores.deleted", st.name);
        await renderBlobStores();
      } catch (e) { out.textContent = e.message; }
    });
    return [st.name, tr("storeType." + st.type, st.type), String(st.blobCount ?? ""), bytes(st.totalSizeInBytes), st.availableSpaceInBytes != null ? bytes(st.availableSpaceInBytes) : "", quota,
      st.unavailable ? t("stores.unavailable") : t("yes"), h("span", {}, del, " ", out)];
  });
  const name = h("input", { type: "text", required: true });
  const path = h("input", { type: "text", placeholder: t("stores.pathHint") });
  const limit = h("input", { type: "number", min: "1", step: "any" });
  const form = h("form", { class: "card" }, h("h2", { text: t("stores.newFile") }), field(t("name"), name, "name"), field(t("stores.path"), path, "path"),
    field(t("stores.quotaMiB"), limit, "softQuota"), h("div", { class: "actions" }, h("button", { type: "submit", text: t("create") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { name: name.value, path: path.value || name.value };
    if (limit.value) body.softQuota = { type: "spaceUsedQuota", limit: Math.round(Number(limit.value) * 1048576) };
    try {
      await api("POST", "/blobstores/file", body);
      state.flash = t("stores.created", name.value);
      await renderBlobStores();
    } catch (e) { if (!placeErrors(form, e)) failure(e); }
  });
  show(h("h1", { text: t("nav.stores") }),
    table([t("name"), t("type"), t("blobs"), t("size"), t("stores.free"), t("stores.quota"), t("stores.available"), t("actions")], rows, [4, 5]), form);
}

async function renderCleanup() {
  const [policies, repos] = await Promise.all([api("GET", "/cleanup-policies"), api("GET", "/repositories")]);
  const result = h("div", { "aria-live": "polite" });
  const rows = policies.map((p) => {
    const pick = h("select", { "aria-label": `${t("repository")} ${p.name}` }, repos.filter((r) => p.format === "*" || r.format === p.format).map((r) => h("option", { value: r.name, text: r.name })));
    const preview = h("button", { type: "button", class: "secondary", text: t("cleanup.preview") });
    preview.addEventListener("click", async () => {
      try {
        const r = await api("GET", `/cleanup-policies/${encodeURIComponent(p.name)}/preview?repository=${encodeURIComponent(pick.value)}`);
        result.replaceChildren(h("h2", { text: t("cleanup.would", r.componentCount, r.repository, bytes(r.totalSize)) }),
          table([t("name"), t("version"), t("size")], r.components.map((c) => [c.group ? `${c.group}/${c.name}` : c.name, c.version, bytes(c.size)])));
      } catch (e) { result.replaceChildren(failed(e)); }
    });
    const del = h("button", { type: "button", class: "danger", text: t("delete") });
    del.addEventListener("click", async () => {
      if (!confirm(t("confirm.delete", p.name))) return;
      try { await api("DELETE", `/cleanup-policies/${encodeURIComponent(p.name)}`); await renderCleanup(); } catch (e) { result.replaceChildren(failed(e)); }
    });
    const criteria = [
      p.criteriaLastBlobUpdated != null ? t("cleanup.published", p.criteriaLastBlobUpdated) : null,
      p.criteriaLastDownloaded != null ? t("cleanup.downloaded", p.criteriaLastDownloaded) : null,
      p.criteriaReleaseType ? p.criteriaReleaseType : null,
      p.criteriaAssetRegex ? `/${p.criteriaAssetRegex}/` : null,
      p.retain != null ? t("cleanup.keep", p.retain) : null,
    ].filter(Boolean).join("; ");
    return [p.name, p.format === "*" ? t("cleanup.allFormats") : p.format, criteria, h("span", {}, pick, " ", preview, " ", del)];
  });
  const name = h("input", { type: "text", required: true });
  const format = h("select", {}, ["*", "docker", "pypi", "npm"].map((f) => h("option", { value: f, text: f === "*" ? t("cleanup.allFormats") : f })));
  const published = h("input", { type: "number", min: "1" });
  const downloaded = h("input", { type: "number", min: "1" });
  const regex = h("input", { type: "text" });
  const retain = h("input", { type: "number", min: "1" });
  const form = h("form", { class: "card" }, h("h2", { text: t("cleanup.new") }), field(t("name"), name, "name"), field(t("format"), format, "format"),
    field(t("cleanup.publishedLabel"), published, "criteriaLastBlobUpdated"), field(t("cleanup.downloadedLabel"), downloaded, "criteriaLastDownloaded"),
    field(t("cleanup.regex"), regex, "criteriaAssetRegex"), field(t("cleanup.retain"), retain, "retain"),
    h("div", { class: "actions" }, h("button", { type: "submit", text: t("create") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const num = (i) => (i.value ? Number(i.value) : null);
    try {
      await api("POST", "/cleanup-policies", { name: name.value, format: format.value === "*" ? "ALL_FORMATS" : format.value, criteriaLastBlobUpdated: num(published),
        criteriaLastDownloaded: num(downloaded), criteriaAssetRegex: regex.value || null, retain: num(retain) });
      state.flash = t("cleanup.created", name.value);
      await renderCleanup();
    } catch (e) { if (!placeErrors(form, e)) failure(e); }
  });
  show(h("h1", { text: t("nav.cleanup") }), table([t("name"), t("format"), t("cleanup.criteria"), t("actions")], rows), result, form);
}

async function renderTasks(id) {
  const tasks = (await api("GET", "/tasks")).items || [];
  const schedule = (f) => (f.schedule === "cron" ? f.cronExpression : f.schedule === "interval" ? t("tasks.every", f.intervalSeconds) : t("tasks.manual"));
  const rows = tasks.map((tk) => {
    const run = h("button", { type: "button", class: "secondary", text: t("tasks.run"), disabled: tk.currentState === "RUNNING" });
    run.addEventListener("click", async () => {
      try { await api("POST", `/tasks/${encodeURIComponent(tk.id)}/run`); state.flash = t("tasks.started", tk.name); location.hash = `#/tasks/${encodeURIComponent(tk.id)}`; await route(); } catch (e) { failure(e); }
    });
    // A built-in task's name is the server's English: the console names it by its type.
    return [h("a", { href: `#/tasks/${encodeURIComponent(tk.id)}`, text: tk.builtin ? tr("task." + tk.type, tk.name) : tk.name }), h("code", { text: tk.type }),
      schedule(tk.frequency || {}), tr("state." + tk.currentState, tk.currentState), when(tk.lastRun), tk.lastRunResult ? tr("result." + tk.lastRunResult, tk.lastRunResult) : "", tk.lastDurationMs != null ? `${tk.lastDurationMs} ms` : "", when(tk.nextRun), run];
  });
  const nodes = [h("h1", { text: t("nav.tasks") }),
    table([t("name"), t("type"), t("tasks.schedule"), t("status"), t("tasks.lastRun"), t("tasks.result"), t("tasks.duration"), t("tasks.next"), t("actions")], rows, [1, 6, 7])];
  const tk = id && tasks.find((x) => x.id === id);
  if (tk) {
    const runs = (await api("GET", `/tasks/${encodeURIComponent(tk.id)}/runs`)).items || [];
    nodes.push(h("h2", { text: t("tasks.history", tk.builtin ? tr("task." + tk.type, tk.name) : tk.name) }),
      table([t("tasks.started.at"), t("tasks.result"), t("tasks.duration"), t("tasks.trigger"), t("tasks.node"), t("tasks.message")],
        runs.map((r) => [when(r.startedAt), r.result ? tr("result." + r.result, r.result) : t("tasks.running"), r.durationMs != null ? `${r.durationMs} ms` : "", tr("trigger." + r.trigger, r.trigger || ""), h("code", { text: r.node || "" }), serverText(r.message)]), [3, 4]));
  }
  show(...nodes);
}

/// Read-only mode, said at the top of every page while it lasts (everyone sees it: their writes
/// would be refused).
async function showFrozen() {
  const banner = document.getElementById("frozen");
  let ro = null;
  try { ro = await api("GET", "/read-only"); } catch (_) { /* signed out meanwhile: nothing to say */ }
  const frozen = ro && ro.frozen;
  banner.hidden = !frozen;
  banner.replaceChildren(...(frozen ? [t("readonly.banner", when(ro.frozenAt)), ro.reason ? " " : "", userText(ro.reason)] : []));
  return ro;
}

/// The System page's read-only card: freeze (with an optional reason) or release.
function readOnlyCard(ro) {
  const act = async (path, body) => {
    try {
      await api("POST", path, body);
      state.flash = t(body ? "readonly.frozen" : "readonly.released");
      await showFrozen();
      await renderSystem();
    } catch (e) { failure(e); }
  };
  if (ro.frozen) {
    const release = h("button", { type: "button", text: t("readonly.release") });
    release.addEventListener("click", () => act("/read-only/release"));
    return h("div", { class: "card" }, h("h2", { text: t("readonly.title") }),
      h("p", {}, t("readonly.since", ro.frozenBy || "—", when(ro.frozenAt)), ro.reason ? " " : "", userText(ro.reason)), h("div", { class: "actions" }, release));
  }
  const reason = h("input", { type: "text", name: "reason", maxlength: "500" });
  const freeze = h("button", { type: "submit", class: "secondary", text: t("readonly.freeze") });
  const form = h("form", {}, field(t("readonly.reason"), reason, "reason"), h("div", { class: "actions" }, freeze));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); act("/read-only/freeze", { reason: reason.value }); });
  return h("div", { class: "card" }, h("h2", { text: t("readonly.title") }), h("p", { text: t("readonly.explain") }), form);
}

async function renderSystem() {
  const [checks, sys, ro] = await Promise.all([api("GET", "/status/check"), api("GET", "/system"), api("GET", "/read-only")]);
  const rows = Object.entries(checks).map(([name, c]) => [name, c.healthy ? h("span", { class: "ok", text: "✓ " + t("dash.healthy") }) : h("span", { class: "error", text: "✗" }), serverText(c.message || "")]);
  const facts = [[t("system.version"), `wharf ${sys.version}`], [t("system.node"), `${sys.node} (${sys.host})`], [t("system.started"), when(sys.startedAt)],
    [t("system.uptime"), t("system.seconds", sys.uptimeSeconds)], [t("system.database"), sys.database]];
  show(h("h1", { text: t("nav.system") }), factList(facts),
    h("h2", { text: t("system.nodes") }), table([t("system.node"), t("system.address")], sys.nodes.map((n) => [h("code", { text: n.node }), n.address || "—"])),
    readOnlyCard(ro),
    h("h2", { text: t("system.checks") }), table([t("system.check"), t("status"), t("tasks.message")], rows));
}

// ---- webhooks ----------------------------------------------------------------------------------

const WEBHOOK_EVENTS = ["audit", "repository", "component", "asset"];

/// The webhook form: create (no `hook`) or edit. Event types are checkboxes; a repository makes
/// it a repository's webhook (component and asset events only); the secret is write-only.
function webhookForm(hook, repos, onSaved) {
  const editing = !!hook;
  const name = h("input", { type: "text", required: true, value: editing ? hook.name : "", disabled: editing });
  const url = h("input", { type: "url", required: true, value: editing ? hook.url : "", placeholder: "https://ci.example.com/hook" });
  const secret = h("input", { type: "password", autocomplete: "new-password", placeholder: editing && hook.hasSecret ? t("hooks.secretKept") : "" });
  const clear = h("input", { type: "checkbox" });
  const repo = h("select", {}, h("option", { value: "", text: t("hooks.global") }),
    repos.map((r) => h("option", { value: r.name, text: r.name, selected: editing && hook.repository === r.name })));
  const boxes = WEBHOOK_EVENTS.map((e) => h("input", { type: "checkbox", value: e, checked: editing ? hook.eventTypes.includes(e) : e === "component" }));
  const types = h("fieldset", { class: "checks" }, h("legend", { text: t("hooks.events") }),
    WEBHOOK_EVENTS.map((e, i) => h("label", { title: t("hooks.event." + e + ".help") }, boxes[i], " ", t("hooks.event." + e))),
    h("div", { class: "error", "data-error-for": "eventTypes", "aria-live": "polite" }));
  // A repository's webhook hears only of its content.
  const scope = () => boxes.forEach((b) => { if (b.value === "audit" || b.value === "repository") { b.disabled = !!repo.value; if (repo.value) b.checked = false; } });
  repo.addEventListener("change", scope);
  scope();
  const enabled = h("input", { type: "checkbox", checked: editing ? hook.enabled : true });
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card" }, h("h2", { text: editing ? t("hooks.edit", hook.name) : t("hooks.new") }),
    field(t("name"), name, "name"), field(t("url"), url, "url"), field(t("repository"), repo, "repository"), types,
    field(t("hooks.secret"), secret, "secret"),
    editing && hook.hasSecret ? h("label", {}, clear, " ", t("hooks.clearSecret")) : null,
    h("label", {}, enabled, " ", t("hooks.enabled")), out,
    h("div", { class: "actions" }, h("button", { type: "submit", text: editing ? t("save") : t("create") }), editing ? h("a", { href: "#/webhooks", text: t("back") }) : null));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { name: name.value, url: url.value, eventTypes: boxes.filter((b) => b.checked).map((b) => b.value), repository: repo.value || null, enabled: enabled.checked };
    // Left out, the stored secret stays; null removes it.
    if (secret.value) body.secret = secret.value;
    else if (!editing || clear.checked) body.secret = null;
    try {
      if (editing) await api("PUT", `/webhooks/${encodeURIComponent(hook.name)}`, body);
      else await api("POST", "/webhooks", body);
      await onSaved(body.name);
    } catch (e) { if (!placeErrors(form, e)) out.replaceChildren(failed(e)); }
  });
  return form;
}

/// Queues a test delivery; says so in `out`.
function testButton(hook, out, after) {
  const b = h("button", { type: "button", class: "secondary", text: t("hooks.test"), disabled: !hook.enabled, "aria-label": t("hooks.testOf", hook.name) });
  b.addEventListener("click", async () => {
    try {
      await api("POST", `/webhooks/${encodeURIComponent(hook.name)}/test`);
      out.replaceChildren(notice(t("hooks.tested", hook.name)));
      if (after) await after();
    } catch (e) { out.replaceChildren(failed(e)); }
  });
  return b;
}

async function renderWebhooks(name) {
  if (name) return renderWebhook(name);
  const [hooks, repos] = await Promise.all([api("GET", "/webhooks"), api("GET", "/repositories")]);
  const out = h("div", { "aria-live": "polite" });
  const rows = hooks.map((w) => {
    const del = h("button", { type: "button", class: "danger", text: t("delete"), "aria-label": `${t("delete")} ${w.name}` });
    del.addEventListener("click", async () => {
      if (!confirm(t("confirm.delete", w.name))) return;
      try { await api("DELETE", `/webhooks/${encodeURIComponent(w.name)}`); state.flash = t("hooks.deleted", w.name); await renderWebhooks(); } catch (e) { out.replaceChildren(failed(e)); }
    });
    return [h("a", { href: `#/webhooks/${encodeURIComponent(w.name)}`, text: w.name }), h("code", { text: w.url }),
      w.eventTypes.map((e) => t("hooks.event." + e)).join(", "), w.repository || t("hooks.global"), w.enabled ? t("yes") : t("no"), w.hasSecret ? t("yes") : t("no"),
      h("span", {}, testButton(w, out), " ", del)];
  });
  const form = webhookForm(null, repos, async (n) => { state.flash = t("hooks.created", n); location.hash = `#/webhooks/${encodeURIComponent(n)}`; });
  show(h("h1", { text: t("nav.webhooks") }), h("p", { class: "muted", text: t("hooks.intro") }),
    table([t("name"), t("url"), t("hooks.events"), t("repository"), t("hooks.enabled"), t("hooks.signed"), t("actions")], rows, [1, 5]), out, form);
}

/// One delivery's attempts in a line: "1: HTTP 500 (12 ms) · 2: 200 (3 ms)".
function attemptsText(d) {
  return (d.attemptLog || []).map((a) => `${a.attempt}: ${a.statusCode != null ? a.statusCode : t("hooks.noAnswer")} (${a.durationMs} ms)`).join(" · ");
}

async function renderWebhook(name) {
  const [hook, repos] = await Promise.all([api("GET", `/webhooks/${encodeURIComponent(name)}`), api("GET", "/repositories")]);
  const out = h("div", { "aria-live": "polite" });
  const log = h("div", {});
  let token = null;
  let rows = [];
  async function load(more) {
    const page = await api("GET", `/webhooks/${encodeURIComponent(name)}/deliveries` + (more && token ? `?continuationToken=${encodeURIComponent(token)}` : ""));
    token = page.continuationToken;
    rows = (more ? rows : []).concat(page.items.map((d) => {
      const last = (d.attemptLog || [])[d.attemptLog.length - 1];
      return [when(d.createdAt), h("code", { text: d.eventId }), d.action ? h("code", { text: d.action }) : "—", tr("hooks.status." + d.status, d.status), String(d.attempts),
        attemptsText(d) || "—", last && last.error ? serverText(last.error) : "—", d.status === "pending" && d.nextAttemptAt ? when(d.nextAttemptAt) : "—"];
    }));
    const moreBtn = token ? h("button", { type: "button", class: "secondary", text: t("more") }) : null;
    if (moreBtn) moreBtn.addEventListener("click", () => load(true).catch(failure));
    const refresh = h("button", { type: "button", class: "secondary", text: t("hooks.refresh") });
    refresh.addEventListener("click", () => load(false).catch(failure));
    log.replaceChildren(h("div", { class: "actions" }, refresh),
      table([t("when"), t("hooks.event"), t("hooks.action"), t("status"), t("hooks.attempts"), t("hooks.answers"), t("hooks.lastError"), t("hooks.nextAttempt")], rows, [2, 6, 7]),
      moreBtn || "");
  }
  const form = webhookForm(hook, repos, async (n) => { state.flash = t("hooks.saved", n); await renderWebhook(n); });
  show(h("h1", { text: t("hooks.title", hook.name) }), form, h("div", { class: "actions" }, testButton(hook, out, () => load(false))), out,
    h("h2", { text: t("hooks.deliveries") }), log);
  await load(false);
}

// ---- routing ---------------------------------------------------------------------------------

const ADMIN_ONLY = ["repositories/new", "users", "roles", "ldap", "audit", "blobstores", "cleanup", "tasks", "webhooks", "system"];

// Routes are drawn one after another, so a slow page never overwrites a later one, and a draw
// reads the hash when it starts: of several queued routes only the last one draws (the others
// would draw the same page again and throw away what the user typed into the first).
let drawing = null;
let queued = 0;
let chain = Promise.resolve();

function hashPath() { return decodeURIComponent(location.hash.replace(/^#\/?/, "")); }

function route() {
  queued++;
  const run = () => (--queued === 0 ? draw() : undefined);
  chain = chain.then(run, run);
  return chain;
}

// A hash change to the page already being drawn (login sets "#/" while start() draws it) or
// while a draw is still queued (it will read the new hash) needs no draw of its own.
function hashChanged() {
  if (queued === 0 && hashPath() === drawing) return;
  route();
}

async function draw() {
  if (!state.user) return renderLogin();
  const path = hashPath();
  drawing = path;
  const links = [...document.querySelectorAll("header nav a")];
  const routeOf = (a) => a.getAttribute("href").replace(/^#\/?/, "");
  const current = links.filter((a) => { const r = routeOf(a); return r === "" ? path === "" : path === r || path.startsWith(r + "/"); })
    .sort((a, b) => routeOf(b).length - routeOf(a).length)[0];
  links.forEach((a) => { if (a === current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current"); });
  const parts = path.split("/");
  showFrozen();
  if (!state.admin && (ADMIN_ONLY.includes(parts[0]) || ADMIN_ONLY.includes(parts.slice(0, 2).join("/")) || parts[2] === "edit")) {
    return show(h("h1", { text: t("forbidden") }));
  }
  try {
    if (path === "") return await renderDashboard();
    if (path === "repositories/new") return await renderRepoForm(null);
    if (parts[0] === "repositories" && parts[2] === "edit") return await renderRepoForm(parts[1]);
    if (parts[0] === "repositories" && parts[2] === "usage") return await renderUsage(parts[1]);
    if (parts[0] === "repositories") return await renderRepo(parts[1]);
    if (parts[0] === "browse") return await renderBrowse(parts[1] || "", parts.slice(2).join("/"));
    if (parts[0] === "component") return await renderComponent(parts[1]);
    if (parts[0] === "search") return await renderSearch();
    if (parts[0] === "users") return await renderUsers(parts[1]);
    if (parts[0] === "account") return await renderAccount();
    if (parts[0] === "roles") return await renderRoles(parts[1]);
    if (parts[0] === "ldap") return await renderLdap(parts[1]);
    if (parts[0] === "tokens") return await renderTokens();
    if (parts[0] === "audit") return await renderAudit();
    if (parts[0] === "blobstores") return await renderBlobStores();
    if (parts[0] === "cleanup") return await renderCleanup();
    if (parts[0] === "tasks") return await renderTasks(parts[1]);
    if (parts[0] === "webhooks") return await renderWebhooks(parts[1]);
    if (parts[0] === "system") return await renderSystem();
    show(h("h1", { text: "404" }));
  } catch (e) {
    failure(e);
  }
}

function start() {
  const top = document.getElementById("top");
  top.hidden = false;
  document.getElementById("who").textContent = state.user;
  top.querySelectorAll("[data-admin]").forEach((a) => { a.hidden = !state.admin; });
  route();
}

async function boot() {
  state.lang = pickLang();
  const lang = document.getElementById("lang");
  lang.value = state.lang;
  lang.addEventListener("change", () => { state.lang = lang.value; localStorage.setItem("wharf.lang", lang.value); translateStatic(); route(); });
  translateStatic();
  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("DELETE", "/session"); } catch (_) { /* already gone */ }
    Object.assign(state, { user: null, admin: false, csrf: null });
    location.hash = "#/";
    renderLogin();
  });
  window.addEventListener("hashchange", hashChanged);
  try {
    const s = await api("GET", "/session");
    Object.assign(state, { user: s.userId, admin: s.admin, csrf: s.csrfToken });
    start();
  } catch (_) {
    renderLogin();
  }
}

boot();
