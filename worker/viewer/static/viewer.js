/* claude-mem viewer: live feed (server-sent events) with history as you scroll, search, an overview
 * chart, a session view, details and delete, queue status with retry by reason, settings.
 *
 * Plain browser JavaScript with no build step. Stored text (prompts, tool output the memory agent
 * summarised) is only ever inserted as text nodes, never as HTML, and the page's CSP forbids inline
 * script and style: nothing a memory contains can run here. Charts are SVG built node by node.
 *
 * Auth: when the worker has a token, it is asked for once and kept in sessionStorage (this tab only);
 * fetches send it as `Authorization: Bearer`, and the EventSource, which cannot send headers, as
 * `/stream?token=`. Every POST is JSON (`Content-Type: application/json`), as the worker requires.
 */
(() => {
  "use strict";

  const TOKEN_KEY = "claude-mem-worker-token";
  const PAGE_SIZE = 50;
  const TRIM_AT = 1500; // cards kept while the reader sits at the top and live items keep arriving
  const STATUS_EVERY_MS = 4000;
  const RECONNECT_MS = 3000;
  const SESSION_DEPTH = 200;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const OBS_TYPES = ["bugfix", "feature", "refactor", "change", "discovery", "decision"];
  const SEARCH_TYPES = { prompt: "prompts", observation: "observations", summary: "sessions" };
  const KIND_RANK = { observation: 0, summary: 1, prompt: 2 };
  const SUMMARY_FIELDS = [
    ["request", "Request"], ["investigated", "Investigated"], ["learned", "Learned"],
    ["completed", "Completed"], ["next_steps", "Next steps"], ["notes", "Notes"],
  ];

  const $ = (id) => document.getElementById(id);
  const state = {
    items: new Map(), // key -> feed entry, for the live feed
    projects: new Set(),
    filterKey: null, // the filter the feed's items were loaded with
    loadingOlder: false,
    exhausted: false, // the feed holds everything the store has for this filter
    es: null,
    reconnectTimer: null,
    statusTimer: null,
    pauseTimer: null,
    selected: null,
    query: "",
    view: "feed",
    session: null, // { id, items: Map, last }
    hooks: null,
    locked: false, // waiting for a token
  };

  class ApiError extends Error {
    constructor(status, message, field) {
      super(message);
      this.status = status;
      this.field = field || null;
    }
  }

  const getToken = () => sessionStorage.getItem(TOKEN_KEY) || "";

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, "the worker did not answer");
    }
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      /* not JSON */
    }
    if (resp.status === 401) {
      askToken(token ? "The worker refused that token." : "");
      throw new ApiError(401, "token required");
    }
    if (!resp.ok) throw new ApiError(resp.status, (data && data.error) || `HTTP ${resp.status}`, data && data.field);
    return data;
  }

  // --- small DOM helpers ---------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    return fill(node, attrs, children);
  }

  function svg(tag, attrs, ...children) {
    return fill(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function fill(node, attrs, children) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.setAttribute("class", value);
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  let toastTimer = null;
  function toast(message) {
    const box = $("toast");
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
  }

  function when(ms) {
    const seconds = Math.round((Date.now() - ms) / 1000);
    if (seconds < 45) return "just now";
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    const date = new Date(ms);
    const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (date.toDateString() === new Date().toDateString()) return time;
    const sameYear = date.getFullYear() === new Date().getFullYear();
    return `${date.toLocaleDateString([], { month: "short", day: "numeric", year: sameYear ? undefined : "numeric" })} ${time}`;
  }

  function ordinal(n) {
    const tens = n % 100;
    const suffix = tens >= 11 && tens <= 13 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th";
    return `${n}${suffix}`;
  }

  const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
  const ref = (kind, id) => ({ observation: `#${id}`, summary: `S${id}`, prompt: `P${id}` }[kind] || `${id}`);
  const label = (entry) => (entry.kind === "observation" ? entry.type || "observation" : entry.kind);
  const shortSession = (id) => (id.length > 12 ? `${id.slice(0, 8)}…` : id);

  function setConn(kind, text) {
    const node = $("conn");
    node.className = `conn conn-${kind}`;
    node.textContent = text;
  }

  // --- views -------------------------------------------------------------------------------------------

  function showView(view) {
    state.view = view;
    for (const name of [...document.body.classList]) if (name.startsWith("view-")) document.body.classList.remove(name);
    document.body.classList.add(`view-${view}`);
    for (const name of ["feed", "overview", "session", "usage"]) $(`${name}-view`).hidden = name !== view;
    for (const tab of document.querySelectorAll(".tab")) {
      tab.setAttribute("aria-pressed", String(tab.dataset.view === view));
    }
    if (view === "overview") loadOverview();
    if (view === "usage") loadUsage();
    if (view === "feed") checkOlder();
  }

  // --- cards (feed items, search hits and timeline items share one look) ------------------------------

  function fromHit(hit) {
    return {
      key: `${hit.kind}:${hit.id}`, kind: hit.kind, id: hit.id, type: hit.type, project: hit.project,
      title: hit.title, snippet: hit.snippet, text: hit.snippet, createdAt: hit.created_at_epoch,
      sources: hit.sources || [], session: hit.session || "", promptNumber: hit.promptNumber,
      partial: true, // a snippet: the details fetch the whole item
    };
  }

  function sessionButton(session, text) {
    const button = el("button", { type: "button", class: "link", title: `Open session ${session}`, text });
    button.addEventListener("click", (e) => {
      e.stopPropagation();
      openSession(session);
    });
    return button;
  }

  function card(entry, fresh, opts) {
    const options = opts || {};
    const prompt = entry.kind === "prompt";
    const li = el("li", {
      class: `card kind-${entry.kind}${fresh ? " fresh" : ""}`, "data-key": entry.key, tabindex: "0",
    });
    // A prompt is what the user typed: its words are the card; where it sits in its session is context.
    const title = prompt ? entry.text || entry.snippet || entry.title || "" : entry.title || "(untitled)";
    const body = prompt ? "" : entry.snippet;
    li.append(el("div", { class: "card-head" },
      el("span", { class: `badge kind-${entry.kind}`, text: label(entry) }),
      el("span", { class: prompt ? "card-title card-quote" : "card-title", text: title }),
      el("time", {
        class: "card-time", "data-ms": entry.createdAt, title: new Date(entry.createdAt).toLocaleString(),
        text: when(entry.createdAt),
      })));
    if (body && body !== title) li.append(el("p", { class: "card-body", text: body }));
    const meta = el("div", { class: "card-meta" });
    if (!prompt) meta.append(el("span", { text: ref(entry.kind, entry.id) }));
    if (entry.project) meta.append(el("span", { class: "project", text: entry.project }));
    if (prompt && entry.promptNumber) {
      meta.append(el("span", {
        text: entry.promptNumber === 1 ? "first prompt of its session" : `${ordinal(entry.promptNumber)} prompt of its session`,
      }));
    }
    if (entry.session && !options.inSession) meta.append(sessionButton(entry.session, `session ${shortSession(entry.session)}`));
    if (entry.sources && entry.sources.length) meta.append(el("span", { text: `matched by ${entry.sources.join(" + ")}` }));
    li.append(meta);
    if (state.selected && state.selected.key === entry.key) li.classList.add("selected");
    li.addEventListener("click", () => select(entry));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter" && e.target === li) select(entry); });
    return li;
  }

  // --- the live feed and its history ---------------------------------------------------------------------

  function filterNow() {
    return { project: $("filter-project").value, type: $("filter-type").value };
  }

  function filterParams() {
    const params = new URLSearchParams();
    const { project, type } = filterNow();
    if (project) params.set("project", project);
    if (type) params.set("type", type);
    return params;
  }

  function sortKey(item) {
    // The worker's order: (created_at, kind rank, id), newest first; the cursor carries the exact time.
    const parts = String(item.cursor || "").split(":");
    const seconds = parts.length >= 3 ? Number(parts.slice(0, -2).join(":")) : item.createdAt / 1000;
    return [seconds, KIND_RANK[item.kind] ?? 0, item.id];
  }

  function newer(a, b) {
    const x = sortKey(a);
    const y = sortKey(b);
    for (let i = 0; i < 3; i += 1) if (x[i] !== y[i]) return x[i] > y[i];
    return false;
  }

  function refreshEmpty() {
    const searching = !$("results").hidden;
    const empty = searching ? $("results").children.length === 0 : state.items.size === 0;
    $("empty").hidden = !empty || (!searching && !state.exhausted && state.items.size === 0 && !state.filterKey);
    const { project, type } = filterNow();
    const filtered = Boolean(project || type);
    $("empty-hooks").hidden = true;
    if (searching) {
      $("empty-title").textContent = "No results.";
      $("empty-text").textContent = "Try other words, or clear the project and type filters.";
    } else if (filtered) {
      $("empty-title").textContent = "Nothing matches these filters yet.";
      $("empty-text").textContent = "New items that match appear here as they are stored.";
    } else {
      $("empty-title").textContent = "No memories yet.";
      $("empty-text").textContent = "Prompts appear here as you type them in Claude Code; observations and"
        + " summaries follow once the memory agent has processed the session.";
      renderHooksNote();
    }
    const n = state.items.size;
    $("feed-count").textContent = `${plural(n, "item")} shown`;
    renderMore();
  }

  function renderHooksNote() {
    const hooks = state.hooks;
    const note = $("empty-hooks");
    if (!hooks) return;
    note.hidden = false;
    note.className = `hooks-note hooks-${hooks.state}`;
    const where = hooks.settingsPath || "Claude Code's settings.json";
    if (hooks.state === "installed") {
      note.replaceChildren("Claude Code hooks are installed (", el("code", { text: where }),
        "). Start a new Claude Code session and send a prompt: it shows up here at once.");
    } else if (hooks.state === "missing") {
      note.replaceChildren("Claude Code hooks are not installed in ", el("code", { text: where }),
        ", so nothing is recorded. Run ", el("code", { text: "claude-mem install" }),
        ", then start a new Claude Code session.");
    } else if (hooks.state === "partial") {
      note.replaceChildren(`Some Claude Code hooks are missing (${hooks.missing.join(", ")}) in `,
        el("code", { text: where }), ". Run ", el("code", { text: "claude-mem install" }), " again.");
    } else {
      note.replaceChildren(`Hooks: ${hooks.detail || "not checked"}.`);
    }
  }

  function renderMore() {
    const box = $("feed-more");
    const searching = !$("results").hidden;
    box.hidden = searching || state.items.size === 0;
    if (box.hidden) return;
    if (state.loadingOlder) {
      $("feed-more-text").textContent = "Loading older items…";
      $("feed-more-button").hidden = true;
    } else if (state.exhausted) {
      $("feed-more-text").textContent = `That is everything: ${plural(state.items.size, "item")}.`;
      $("feed-more-button").hidden = true;
    } else {
      $("feed-more-text").textContent = "";
      $("feed-more-button").hidden = false;
    }
  }

  function rememberProjects(names) {
    let added = false;
    for (const name of names) {
      if (name && !state.projects.has(name)) {
        state.projects.add(name);
        added = true;
      }
    }
    if (!added) return;
    const sorted = [...state.projects].sort((a, b) => a.localeCompare(b));
    for (const id of ["filter-project", "overview-project"]) {
      const menu = $(id);
      const current = menu.value;
      menu.replaceChildren(el("option", { value: "", text: "All projects" }),
        ...sorted.map((name) => el("option", { value: name, text: name })));
      menu.value = current;
    }
  }

  function insertItem(item, fresh) {
    if (state.items.has(item.key)) return;
    state.items.set(item.key, item);
    const feed = $("feed");
    const node = card(item, fresh);
    for (const other of feed.children) {
      const entry = state.items.get(other.dataset.key);
      if (entry && newer(item, entry)) {
        feed.insertBefore(node, other);
        return;
      }
    }
    feed.append(node);
  }

  function renderSnapshot(data) {
    const key = JSON.stringify(filterNow());
    if (state.filterKey !== key) {
      // A new filter: start over. A reconnect with the same filter keeps the history already scrolled.
      state.items.clear();
      $("feed").replaceChildren();
      state.exhausted = false;
      state.filterKey = key;
    }
    const items = data.items || [];
    for (const item of items) insertItem(item, false);
    if (items.length < PAGE_SIZE && state.items.size === items.length) state.exhausted = true;
    rememberProjects(data.projects || []);
    rememberProjects(items.map((i) => i.project));
    refreshEmpty();
    checkOlder();
  }

  function addLive(item) {
    rememberProjects([item.project]);
    if (state.items.has(item.key)) return;
    insertItem(item, true);
    const feed = $("feed");
    if (feed.children.length > TRIM_AT && window.scrollY < 200) {
      while (feed.children.length > TRIM_AT) {
        const last = feed.lastElementChild;
        state.items.delete(last.dataset.key);
        last.remove();
      }
      state.exhausted = false;
    }
    refreshEmpty();
  }

  function lastCursor() {
    const last = $("feed").lastElementChild;
    const entry = last && state.items.get(last.dataset.key);
    return entry ? entry.cursor : null;
  }

  async function loadOlder() {
    if (state.loadingOlder || state.exhausted || state.locked || !$("results").hidden) return;
    const cursor = lastCursor();
    if (!cursor) return;
    const key = state.filterKey;
    state.loadingOlder = true;
    renderMore();
    let page;
    try {
      const params = filterParams();
      params.set("before", cursor);
      params.set("limit", String(PAGE_SIZE));
      page = await api("GET", `/api/feed?${params}`);
    } catch (err) {
      state.loadingOlder = false;
      renderMore();
      if (err.status !== 401) $("feed-more-text").textContent = `Could not load older items: ${err.message}`;
      return;
    }
    state.loadingOlder = false;
    if (key !== state.filterKey) return; // the filter changed meanwhile: this page is for another list
    for (const item of page.items) insertItem(item, false);
    rememberProjects(page.items.map((i) => i.project));
    if (!page.next) state.exhausted = true;
    refreshEmpty();
    checkOlder();
  }

  function checkOlder() {
    // The observer fires on changes only: after a page lands, the sentinel may still be in view.
    if (state.view !== "feed") return;
    const box = $("feed-more");
    if (box.hidden) return;
    const rect = box.getBoundingClientRect();
    if (rect.top < window.innerHeight + 600) loadOlder();
  }

  function removeEverywhere(key) {
    state.items.delete(key);
    if (state.session) state.session.items.delete(key);
    for (const node of document.querySelectorAll(".card")) {
      if (node.dataset.key === key) node.remove();
    }
    refreshEmpty();
  }

  function streamUrl() {
    const params = filterParams();
    params.set("limit", String(PAGE_SIZE));
    const token = getToken();
    if (token) params.set("token", token);
    return `/stream?${params}`;
  }

  function disconnect() {
    clearTimeout(state.reconnectTimer);
    if (state.es) state.es.close();
    state.es = null;
  }

  function connect() {
    disconnect();
    if (state.locked) return;
    setConn("wait", "connecting…");
    const es = new EventSource(streamUrl());
    state.es = es;
    es.addEventListener("open", () => setConn("live", "live"));
    es.addEventListener("snapshot", (e) => {
      renderSnapshot(JSON.parse(e.data));
      setConn("live", "live");
    });
    es.addEventListener("item", (e) => addLive(JSON.parse(e.data)));
    // The worker cut this stream because the page fell behind: start over from a fresh snapshot.
    es.addEventListener("resync", () => connect());
    es.addEventListener("problem", (e) => toast(JSON.parse(e.data).error));
    es.addEventListener("error", () => {
      if (state.es !== es) return;
      if (es.readyState !== EventSource.CLOSED) {
        setConn("wait", "reconnecting…");
        return;
      }
      // Refused outright (401, 503…): EventSource gives up; find out why, then try again.
      setConn("off", "offline");
      disconnect();
      api("GET", "/api/processing-status").then(
        () => { state.reconnectTimer = setTimeout(connect, RECONNECT_MS); },
        (err) => { if (err.status !== 401) state.reconnectTimer = setTimeout(connect, RECONNECT_MS); },
      );
    });
  }

  // --- search ----------------------------------------------------------------------------------------

  async function runSearch(query) {
    state.query = query;
    if (state.view !== "feed") showView("feed");
    const params = new URLSearchParams({ query, mode: "hybrid", limit: "30" });
    const { project, type } = filterNow();
    if (project) params.set("project", project);
    if (SEARCH_TYPES[type]) params.set("type", SEARCH_TYPES[type]);
    else if (OBS_TYPES.includes(type)) params.set("obs_type", type);
    $("search-head").hidden = false;
    $("search-summary").textContent = `Searching for “${query}”…`;
    $("search-notice").hidden = true;
    $("feed").hidden = true;
    const results = $("results");
    results.hidden = false;
    results.replaceChildren();
    refreshEmpty();
    let res;
    try {
      res = await api("GET", `/api/search?${params}`);
    } catch (err) {
      $("search-summary").textContent = `Search failed: ${err.message}`;
      return;
    }
    if (state.query !== query) return;
    const n = res.totalResults;
    $("search-summary").textContent = `${plural(n, "result")} for “${query}” · ${res.modeUsed}`;
    if (res.notice) {
      $("search-notice").textContent = res.notice;
      $("search-notice").hidden = false;
    }
    results.replaceChildren(...res.results.map((hit) => card(fromHit(hit), false)));
    refreshEmpty();
  }

  function clearSearch() {
    state.query = "";
    $("search-input").value = "";
    $("search-head").hidden = true;
    $("search-notice").hidden = true;
    $("results").hidden = true;
    $("results").replaceChildren();
    $("feed").hidden = false;
    refreshEmpty();
    checkOlder();
  }

  // --- the session view (GET /api/timeline?session=) -------------------------------------------------------

  async function openSession(sessionId) {
    state.session = { id: sessionId, items: new Map(), last: null, info: null };
    closeDetails();
    showView("session");
    window.scrollTo(0, 0);
    $("session-title").textContent = `Session ${sessionId}`;
    $("session-meta").textContent = "Loading…";
    $("session-items").replaceChildren();
    $("session-empty").hidden = true;
    $("session-more").hidden = true;
    await loadSession();
  }

  async function loadSession() {
    const current = state.session;
    if (!current) return;
    const params = new URLSearchParams({ session: current.id, depth_after: String(SESSION_DEPTH), depth_before: "0" });
    if (current.last !== null) params.set("anchor", String(current.last - 1)); // epoch ms; items seen are skipped
    let res;
    try {
      res = await api("GET", `/api/timeline?${params}`);
    } catch (err) {
      if (state.session === current) $("session-meta").textContent = `Could not load the session: ${err.message}`;
      return;
    }
    if (state.session !== current) return;
    const info = res.session;
    if (info) {
      current.info = info;
      $("session-title").replaceChildren(el("strong", { text: info.project || "no project" }),
        el("span", { class: "muted", text: ` · session ${info.contentSessionId}` }));
    }
    let added = 0;
    for (const item of res.items) {
      const entry = { ...fromHit(item), session: item.session || current.id };
      if (current.items.has(entry.key)) continue;
      current.items.set(entry.key, entry);
      $("session-items").append(card(entry, false, { inSession: true }));
      current.last = item.created_at_epoch;
      added += 1;
    }
    const counts = { prompt: 0, observation: 0, summary: 0 };
    for (const entry of current.items.values()) counts[entry.kind] += 1;
    const parts = [];
    if (info) {
      parts.push(`started ${new Date(info.startedAtEpoch).toLocaleString()}`);
      parts.push(info.status === "completed" ? "ended" : info.status);
    }
    parts.push(plural(counts.prompt, "prompt"), plural(counts.observation, "observation"),
      plural(counts.summary, "summary").replace("summarys", "summaries"));
    $("session-meta").textContent = parts.join(" · ");
    $("session-empty").hidden = current.items.size > 0;
    $("session-more").hidden = res.items.length < SESSION_DEPTH || added === 0;
  }

  // --- overview (GET /api/overview) ------------------------------------------------------------------------

  function niceMax(value) {
    if (value <= 5) return 5;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
    return value;
  }

  function dayDate(iso) {
    const [y, m, d] = iso.split("-").map(Number);
    return new Date(y, m - 1, d);
  }

  function dayRows(days, values) {
    return days.map((d) => ({
      date: dayDate(d.day),
      title: dayDate(d.day).toLocaleDateString([], { weekday: "short", month: "short", day: "numeric" }),
      values: values(d),
    }));
  }

  function stackedChart(target, rows, series, describe) {
    // Stacked bars per day, drawn at the container's pixel size (a stretched viewBox would distort
    // the labels) and redrawn when it changes. Sizes are SVG attributes, which the CSP allows.
    const width = Math.max(240, Math.round(target.clientWidth || 640));
    const height = width < 500 ? 150 : 190;
    const left = 30;
    const bottom = 20;
    const top = 8;
    const plotH = height - top - bottom;
    const total = (row) => series.reduce((sum, s) => sum + (row.values[s] || 0), 0);
    const max = niceMax(Math.max(1, ...rows.map(total)));
    const slot = (width - left) / Math.max(rows.length, 1);
    const barW = Math.max(2, Math.min(28, slot * 0.7));
    const root = svg("svg", {
      viewBox: `0 0 ${width} ${height}`, width, height, class: "chart-svg", role: "img", "aria-label": describe,
    });
    for (const frac of [0, 0.5, 1]) {
      const y = top + plotH * (1 - frac);
      root.append(svg("line", { x1: left, x2: width, y1: y, y2: y, class: "grid" }));
      const tick = max * frac;
      const text = tick >= 10000 ? `${Math.round(tick / 1000)}k` : String(Math.round(tick));
      root.append(svg("text", { x: left - 5, y: y + 4, class: "axis", "text-anchor": "end", text }));
    }
    const every = Math.max(1, Math.ceil(rows.length / Math.max(2, Math.floor(width / 70))));
    let lastMonth = null;
    rows.forEach((row, i) => {
      const x = left + i * slot + (slot - barW) / 2;
      let y = top + plotH;
      const group = svg("g", { class: "bar" });
      group.append(svg("title", { text: [row.title, ...series.map((s) => `${(row.values[s] || 0).toLocaleString()} ${s}`)].join("\n") }));
      group.append(svg("rect", { x: left + i * slot, y: top, width: slot, height: plotH, class: "hit" }));
      for (const s of series) {
        const n = row.values[s] || 0;
        if (!n) continue;
        const h = (n / max) * plotH;
        y -= h;
        group.append(svg("rect", { x, y, width: barW, height: Math.max(h, 0.5), class: `seg seg-${s}` }));
      }
      root.append(group);
      // Labels every few days, counted back from today; the month is named when it changes.
      if ((rows.length - 1 - i) % every === 0) {
        const month = row.date.getMonth();
        const text = month !== lastMonth
          ? row.date.toLocaleDateString([], { month: "short", day: "numeric" }) : String(row.date.getDate());
        lastMonth = month;
        root.append(svg("text", {
          x: Math.min(Math.max(left + i * slot + slot / 2, left + 14), width - 14), y: height - 5,
          class: "axis", "text-anchor": "middle", text,
        }));
      }
    });
    target.replaceChildren(root);
    target.redraw = () => stackedChart(target, rows, series, describe);
  }

  function barList(target, rows, onPick) {
    const max = Math.max(1, ...rows.map((r) => r.value));
    const nodes = rows.map((row) => {
      const bar = svg("svg", { viewBox: "0 0 100 6", class: "bar-svg", preserveAspectRatio: "none", "aria-hidden": "true" },
        svg("rect", { x: 0, y: 0, width: 100, height: 6, class: "track" }),
        svg("rect", { x: 0, y: 0, width: Math.max((row.value / max) * 100, 0.8), height: 6, class: `fill ${row.cls || ""}` }));
      const inner = [el("span", { class: "bar-name", text: row.name }), el("span", { class: "bar-num", text: row.value.toLocaleString() }), bar];
      if (row.detail) inner.push(el("span", { class: "bar-detail muted", text: row.detail }));
      if (!onPick) return el("li", { class: "bar-row" }, ...inner);
      const button = el("button", { type: "button", class: "bar-row pick", title: `Show the feed of ${row.name}` }, ...inner);
      button.addEventListener("click", () => onPick(row));
      return el("li", {}, button);
    });
    target.replaceChildren(...(nodes.length ? nodes : [el("li", { class: "muted small", text: "Nothing stored yet." })]));
  }

  async function loadOverview() {
    const project = $("overview-project").value;
    const days = $("overview-days").value;
    const params = new URLSearchParams({ days, tz: String(-new Date().getTimezoneOffset()) });
    if (project) params.set("project", project);
    $("overview-status").textContent = "Loading…";
    let data;
    try {
      data = await api("GET", `/api/overview?${params}`);
    } catch (err) {
      $("overview-status").textContent = `Overview unavailable: ${err.message}`;
      return;
    }
    if ($("overview-project").value !== project || $("overview-days").value !== days) return;
    $("overview-status").textContent = "";
    rememberProjects(data.byProject.map((p) => p.project));
    const t = data.totals;
    const total = (key, word, words) => el("div", { class: `total total-${key}` },
      el("span", { class: "num", id: `total-${key}`, text: t[words].toLocaleString() }),
      el("span", { class: "lbl", text: t[words] === 1 ? word : words }));
    $("overview-totals").replaceChildren(total("observations", "observation", "observations"),
      total("prompts", "prompt", "prompts"), total("summaries", "summary", "summaries"));
    const rows = dayRows(data.byDay, (d) => ({ observations: d.observations, prompts: d.prompts, summaries: d.summaries }));
    const stored = data.byDay.reduce((sum, d) => sum + d.observations + d.prompts + d.summaries, 0);
    stackedChart($("overview-days-chart"), rows, ["observations", "prompts", "summaries"],
      `${stored} items stored in the last ${data.days} days${project ? ` in ${project}` : ""}`);
    barList($("overview-projects"), data.byProject.map((p) => ({
      name: p.project || "(no project)", value: p.total, project: p.project, cls: "fill-project",
      detail: `${p.observations} obs · ${p.prompts} prompts · ${p.summaries} summaries`,
    })), (row) => {
      $("filter-project").value = row.project;
      $("filter-type").value = "";
      clearSearch();
      showView("feed");
      connect();
    });
    barList($("overview-types"), data.byType.map((r) => ({ name: r.type, value: r.count, cls: "fill-observation" })));
  }

  // --- usage (GET /api/usage: the memory agent's tokens per UTC day and project) ----------------------------

  const USAGE_DAYS = 30;

  function utcDays(n) {
    const out = [];
    const today = new Date();
    for (let i = n - 1; i >= 0; i -= 1) {
      const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
      out.push(d.toISOString().slice(0, 10));
    }
    return out;
  }

  async function loadUsage() {
    let data;
    try {
      data = await api("GET", `/api/usage?days=${USAGE_DAYS}`);
    } catch (err) {
      $("usage-summary").textContent = `Usage unavailable: ${err.message}`;
      return;
    }
    const perDay = new Map(utcDays(USAGE_DAYS).map((day) => [day, { day, input: 0, output: 0, cache: 0 }]));
    const perProject = new Map();
    let cost = 0;
    for (const row of data.days || []) {
      const day = perDay.get(row.day);
      if (day) {
        day.input += row.inputTokens || 0;
        day.output += row.outputTokens || 0;
        day.cache += (row.cacheReadTokens || 0) + (row.cacheCreationTokens || 0);
      }
      const p = perProject.get(row.project) || { project: row.project, tokens: 0, turns: 0, cost: 0 };
      p.tokens += row.totalTokens || 0;
      p.turns += row.turns || 0;
      p.cost += row.costUsd || 0;
      cost += row.costUsd || 0;
      perProject.set(row.project, p);
    }
    const days = [...perDay.values()];
    const total = days.reduce((sum, d) => sum + d.input + d.output + d.cache, 0);
    const budget = data.budget || {};
    const parts = [`${total.toLocaleString()} tokens in the last ${USAGE_DAYS} days (UTC)`];
    if (cost) parts.push(`$${cost.toFixed(2)} where the provider reports cost`);
    if (budget.dailyTokenBudget) {
      parts.push(`today ${budget.usedToday.toLocaleString()} of ${budget.dailyTokenBudget.toLocaleString()} budgeted`
        + (budget.exhausted && budget.resumesAt
          ? `; spent, paused until ${new Date(budget.resumesAt * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`
          : ""));
    }
    $("usage-summary").textContent = parts.join(" · ");
    const rows = dayRows(days, (d) => ({ input: d.input, output: d.output, cached: d.cache }));
    stackedChart($("usage-chart"), rows, ["input", "output", "cached"], `${total} tokens per day`);
    barList($("usage-projects"), [...perProject.values()].sort((a, b) => b.tokens - a.tokens).map((p) => ({
      name: p.project || "(no project)", value: p.tokens, cls: "fill-project",
      detail: `${plural(p.turns, "agent turn")}${p.cost ? ` · $${p.cost.toFixed(2)}` : ""}`,
    })));
  }

  // --- details and delete ----------------------------------------------------------------------------

  function section(title, content) {
    if (content === null || content === undefined || content === "") return [];
    if (Array.isArray(content) && content.length === 0) return [];
    const node = Array.isArray(content)
      ? el("ul", {}, content.map((x) => el("li", { text: String(x) })))
      : el("p", { class: "prose", text: String(content) });
    return [el("h3", { text: title }), node];
  }

  function fileList(title, files) {
    if (!files || !files.length) return [];
    return [el("h3", { text: title }), el("ul", { class: "files" }, files.map((f) => el("li", { text: String(f) })))];
  }

  function sessionLines(entry, extra) {
    const lines = [];
    if (entry.project) lines.push(`project ${entry.project}`);
    const session = extra.content_session_id || entry.session;
    if (session) lines.push(`session ${session}`);
    if (extra.memory_session_id) lines.push(`memory session ${extra.memory_session_id}`);
    const prompt = extra.prompt_number ?? entry.promptNumber;
    if (prompt) lines.push(`during the ${ordinal(prompt)} prompt`);
    const ms = extra.created_at_epoch || entry.createdAt;
    if (ms) lines.push(new Date(ms).toLocaleString());
    return lines;
  }

  function renderObservation(entry, obs) {
    const concepts = (obs.concepts || []).map((c) => el("span", { class: "chip", text: String(c) }));
    $("details-title").textContent = `Observation ${ref("observation", obs.id)}`;
    $("details-body").replaceChildren(
      el("p", {}, el("span", { class: "badge kind-observation", text: obs.type }), " ",
        el("strong", { text: obs.title || "(untitled)" })),
      ...section("Subtitle", obs.subtitle),
      ...section("Narrative", obs.narrative),
      ...section("Facts", obs.facts || []),
      ...(concepts.length ? [el("h3", { text: "Concepts" }), el("p", {}, concepts)] : []),
      ...fileList("Files read", obs.files_read),
      ...fileList("Files modified", obs.files_modified),
      ...section("Session", sessionLines(entry, obs)),
    );
    if (obs.content_session_id && !entry.session) entry.session = obs.content_session_id;
    $("session-open").hidden = !entry.session || state.view === "session";
  }

  function renderSummary(entry) {
    $("details-title").textContent = "Session summary";
    const fields = entry.fields || {};
    const parts = SUMMARY_FIELDS.flatMap(([name, title]) => section(title, fields[name]));
    $("details-body").replaceChildren(
      ...(parts.length ? parts : section("Summary", entry.snippet)),
      ...section("Session", sessionLines(entry, {})),
    );
  }

  function renderPrompt(entry) {
    const n = entry.promptNumber;
    $("details-title").textContent = n ? `${n === 1 ? "First" : ordinal(n)} prompt of the session` : "Prompt";
    $("details-body").replaceChildren(
      ...section("You asked", entry.text || entry.snippet),
      ...section("Session", sessionLines(entry, {})),
    );
  }

  function resetDelete() {
    const button = $("delete-button");
    delete button.dataset.armed;
    button.disabled = false;
    button.textContent = "Delete observation";
    $("delete-cancel").hidden = true;
  }

  function closeDetails() {
    state.selected = null;
    $("details").hidden = true;
    document.body.classList.remove("details-open");
    for (const node of document.querySelectorAll(".card.selected")) node.classList.remove("selected");
  }

  async function select(entry) {
    state.selected = entry;
    for (const node of document.querySelectorAll(".card")) {
      node.classList.toggle("selected", node.dataset.key === entry.key);
    }
    resetDelete();
    $("details").hidden = false;
    document.body.classList.add("details-open");
    $("details-actions").hidden = false;
    $("delete-button").hidden = entry.kind !== "observation";
    $("session-open").hidden = !entry.session || state.view === "session";
    if (entry.kind === "summary" || entry.kind === "prompt") {
      const render = entry.kind === "summary" ? renderSummary : renderPrompt;
      render(entry);
      if (!entry.partial) return undefined;
      try {
        const whole = await api("GET", `/api/feed/${entry.kind}/${entry.id}`);
        Object.assign(entry, whole, { partial: false, sources: entry.sources });
        if (state.selected === entry) render(entry);
      } catch (err) {
        if (err.status === 404 && state.selected === entry) {
          $("details-body").replaceChildren(el("p", { class: "muted", text: "This item no longer exists." }));
        }
      }
      return undefined;
    }
    $("details-title").textContent = `Observation ${ref("observation", entry.id)}`;
    $("details-body").replaceChildren(el("p", { class: "muted", text: "Loading…" }));
    try {
      const obs = await api("GET", `/api/observation/${entry.id}`);
      if (state.selected === entry) renderObservation(entry, obs);
    } catch (err) {
      if (state.selected !== entry) return;
      if (err.status === 404) {
        $("details-body").replaceChildren(el("p", { class: "muted", text: "This observation no longer exists." }));
        $("delete-button").hidden = true;
        removeEverywhere(entry.key);
      } else {
        $("details-body").replaceChildren(el("p", { class: "error-text", text: `Could not load it: ${err.message}` }));
      }
    }
  }

  async function deleteSelected() {
    const entry = state.selected;
    if (!entry || entry.kind !== "observation") return;
    const button = $("delete-button");
    if (!button.dataset.armed) {
      button.dataset.armed = "1";
      button.textContent = `Really delete ${ref("observation", entry.id)}?`;
      $("delete-cancel").hidden = false;
      return;
    }
    button.disabled = true;
    try {
      const res = await api("DELETE", `/api/observation/${entry.id}`);
      removeEverywhere(entry.key);
      closeDetails();
      toast(res.vectorsDeleted
        ? `Deleted observation ${ref("observation", entry.id)}.`
        : `Deleted observation ${ref("observation", entry.id)}; Chroma is unreachable, its vectors go when it is back.`);
    } catch (err) {
      if (err.status === 404) {
        removeEverywhere(entry.key);
        closeDetails();
        toast(`Observation ${ref("observation", entry.id)} was already deleted.`);
      } else {
        toast(`Delete failed: ${err.message}`);
      }
    } finally {
      resetDelete();
    }
  }

  // --- status ------------------------------------------------------------------------------------------

  function setCount(id, value, alert) {
    const node = $(id);
    node.textContent = value === undefined ? "–" : String(value);
    node.parentElement.classList.toggle("alert", Boolean(alert && value));
  }

  function vectorsText(v) {
    if (!v || !v.enabled) return "disabled (keyword search only)";
    const sum = (obj) => Object.values(obj || {}).reduce((a, b) => a + b, 0);
    const where = v.mode === "http" ? v.url : "embedded";
    const health = v.reachable === false ? `unreachable: ${v.lastError || "?"}` : v.reachable ? "ok" : "checking";
    const unsynced = sum(v.unsynced);
    const loading = ((v.indexes || {}).loading || []).map(
      (l) => `reading the index of ${l.project == null ? "all projects" : l.project} (${Math.round(l.seconds)}s)`);
    return `${where}, ${health}; ${sum(v.synced)} synced${unsynced ? `, ${unsynced} waiting` : ""}`
      + (loading.length ? `; ${loading.join(", ")}` : "");
  }

  function hooksText(h) {
    if (!h) return "–";
    if (h.state === "installed") return "installed";
    if (h.state === "missing") return "not installed (claude-mem install)";
    if (h.state === "partial") return `missing ${h.missing.join(", ")}`;
    return h.detail || "unknown";
  }

  function seconds(n) {
    const s = Math.max(0, Math.round(n));
    return s < 90 ? `${s} s` : `${Math.round(s / 60)} min`;
  }

  function renderPause(st) {
    // pausedFor: seconds until the paused queue tries again; counted down here between polls.
    clearInterval(state.pauseTimer);
    const box = $("status-pause");
    const until = st.pausedFor > 0 ? Date.now() + st.pausedFor * 1000 : 0;
    box.hidden = !until;
    if (!until) return;
    const head = el("strong", {});
    box.replaceChildren(head,
      st.pausedReason ? el("span", { class: "pause-reason", text: st.pausedReason }) : null,
      el("span", { class: "pause-note", text: "Nothing is lost: events wait in the queue." }));
    const show = () => {
      const left = (until - Date.now()) / 1000;
      head.textContent = left > 0.5 ? `Processing is paused; next try in ${seconds(left)}.` : "Processing is paused; trying again now…";
    };
    show();
    state.pauseTimer = setInterval(show, 1000);
  }

  function renderFailed(st) {
    const reasons = st.failedReasons || [];
    $("failed-box").hidden = reasons.length === 0;
    const rows = reasons.slice(0, 8).map((r) => {
      const button = el("button", { type: "button", class: "ghost small-button", text: "Retry" });
      button.addEventListener("click", () => retry(r.reason || "", button));
      return el("li", {},
        el("span", { class: "failed-count", text: String(r.count) }),
        el("span", { class: "failed-reason", text: r.reason || "(no reason recorded)" }),
        button);
    });
    if (reasons.length > 1) {
      const all = el("button", { type: "button", class: "ghost small-button", text: "Retry all failed" });
      all.addEventListener("click", () => retry("", all));
      rows.push(el("li", { class: "retry-all" }, all));
    }
    $("failed-reasons").replaceChildren(...rows);
  }

  async function retry(reason, button) {
    button.disabled = true;
    try {
      const res = await api("POST", "/api/queue/retry", reason ? { reason } : {});
      toast(res.retried
        ? `${plural(res.retried, "failed event")} went back to the queue.`
        : "Nothing to retry: those events are no longer failed.");
    } catch (err) {
      toast(`Retry failed: ${err.message}`);
    } finally {
      button.disabled = false;
    }
    pollStatus();
  }

  function renderStatus(st) {
    const q = st.queue || {};
    setCount("count-pending", q.pending);
    setCount("count-processing", q.processing);
    setCount("count-failed", q.failed, true);
    const badge = $("tab-status-badge");
    badge.hidden = !q.failed;
    badge.textContent = q.failed ? String(q.failed) : "";
    // The queue's last error often repeats the pause's reason or a gateway problem: say each thing once.
    const same = (a, b) => Boolean(a && b && (a.includes(b) || b.includes(a)));
    const paused = st.pausedFor > 0;
    const lastError = paused && same(st.lastError, st.pausedReason) ? "" : st.lastError;
    const error = $("status-error");
    error.hidden = !lastError;
    error.textContent = lastError ? `Last error: ${lastError}` : "";
    const problems = ((st.gateway && st.gateway.problems) || [])
      .filter((p) => !same(p, st.lastError) && !(paused && same(p, st.pausedReason)));
    $("status-problems").replaceChildren(...problems.map((p) => el("li", { text: p })));
    $("status-problems").hidden = problems.length === 0;
    renderPause(st);
    renderFailed(st);
    $("st-provider").textContent = st.authMethod && st.provider === "claude"
      ? `${st.provider} (${st.authMethod})` : st.provider || "–";
    $("st-model").textContent = st.model || "–";
    $("st-base-url").textContent = st.baseUrl || "— (not set)";
    $("st-agent").textContent = st.isProcessing
      ? `processing ${plural(st.activeSessions, "session")}`
      : st.queueDepth ? `${st.queueDepth} waiting` : "idle";
    $("st-vectors").textContent = vectorsText(st.vectors);
    $("st-hooks").textContent = hooksText(st.hooks);
    const hooksChanged = JSON.stringify(st.hooks || null) !== JSON.stringify(state.hooks);
    state.hooks = st.hooks || null;
    if (hooksChanged) refreshEmpty();
    $("tab-usage").hidden = !("usage" in st); // a worker that records the agent's token usage
    $("status-age").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  async function pollStatus() {
    clearTimeout(state.statusTimer);
    if (state.locked) return;
    if (document.visibilityState === "visible" || !$("status-age").textContent) {
      try {
        renderStatus(await api("GET", "/api/processing-status"));
      } catch (err) {
        if (err.status === 401) return;
        const error = $("status-error");
        error.hidden = false;
        error.textContent = `Status unavailable: ${err.message}`;
      }
    }
    state.statusTimer = setTimeout(pollStatus, STATUS_EVERY_MS);
  }

  // --- settings (GET /api/settings: values and the catalogue) ----------------------------------------------------------------

  function settingControl(spec) {
    const value = String(spec.value ?? "");
    const common = { name: spec.key, id: `setting-${spec.key}`, "data-original": value, disabled: spec.readOnly };
    if (spec.type === "boolean") {
      const box = el("input", { ...common, type: "checkbox", role: "switch", class: "toggle" });
      box.checked = value.trim().toLowerCase() === "true";
      box.dataset.original = box.checked ? "true" : "false";
      return box;
    }
    if (spec.type === "choice") {
      const choices = spec.choices.includes(value) ? spec.choices : [value, ...spec.choices];
      const menu = el("select", common, ...choices.map((c) => el("option", { value: c, text: c })));
      menu.value = value;
      return menu;
    }
    if (spec.type === "integer") {
      return el("input", {
        ...common, type: "number", inputmode: "numeric", step: "1", min: spec.min, max: spec.max, value,
      });
    }
    return el("input", {
      ...common, type: "text", value, spellcheck: "false", autocomplete: "off", placeholder: "not set",
    });
  }

  function controlValue(input) {
    return input.type === "checkbox" ? (input.checked ? "true" : "false") : input.value;
  }

  function ticks(text) {
    // `code` spans in the catalogue's prose, as text nodes: nothing in it is parsed as HTML.
    return String(text).split("`").map((part, i) => (i % 2 ? el("code", { text: part }) : part));
  }

  function settingRow(spec) {
    const control = settingControl(spec);
    const help = [spec.description];
    if (spec.type === "integer" && (spec.min !== null || spec.max !== null)) {
      help.push(`${(spec.min ?? "…").toLocaleString()}–${(spec.max ?? "…").toLocaleString()}${spec.unit ? ` ${spec.unit}` : ""}.`);
    }
    if (spec.default !== "" && spec.default !== undefined && spec.type !== "boolean") help.push(`Default: ${spec.default}.`);
    if (spec.type === "boolean") help.push(`Default: ${spec.default === "true" ? "on" : "off"}.`);
    const head = el("div", { class: "setting-head" },
      el("label", { for: control.id, class: "setting-label", text: spec.label }),
      spec.type === "boolean" ? control : null);
    const row = el("div", { class: `setting${spec.readOnly ? " read-only" : ""}`, "data-key": spec.key },
      head,
      spec.type === "boolean" ? null : el("div", { class: "setting-control" }, control,
        spec.unit && spec.type === "integer" ? el("span", { class: "unit muted", text: spec.unit }) : null),
      el("p", { class: "setting-help", id: `help-${spec.key}`, text: help.join(" ") }));
    if (spec.readOnly) {
      row.append(el("p", { class: "setting-note", id: `note-${spec.key}` },
        "Read-only here. Change it with ", ...ticks(spec.where || "`settings.json`"), "."));
    }
    row.append(el("p", { class: "setting-key muted", text: spec.key }));
    control.setAttribute("aria-describedby", `help-${spec.key}${spec.readOnly ? ` note-${spec.key}` : ""}`);
    return row;
  }

  function renderSettings(catalogue) {
    const editable = catalogue.filter((s) => !s.readOnly).map(settingRow);
    const fixed = catalogue.filter((s) => s.readOnly).map(settingRow);
    const groups = [...editable];
    if (fixed.length) {
      groups.push(el("div", { class: "settings-group" },
        el("h3", { text: "Routing and credentials" }),
        el("p", { class: "muted small", text: "These decide where the worker listens and where your credentials are"
          + " sent, so this page shows them but cannot change them." })), ...fixed);
    }
    $("settings-fields").replaceChildren(...groups);
  }

  async function loadSettings() {
    // {settings: values, catalogue: {key: {label, description, type, min, max, choices, readOnly, where}}}
    const data = await api("GET", "/api/settings");
    const values = data.settings || {};
    renderSettings(Object.entries(data.catalogue || {}).map(([key, spec]) => ({
      ...spec, key, value: key in values ? values[key] : spec.default,
    })));
  }

  function settingsMessage(text, ok) {
    const node = $("settings-message");
    node.hidden = false;
    node.className = `small ${ok ? "ok-text" : "error-text"}`;
    node.textContent = text;
  }

  function editableControls() {
    return [...$("settings-fields").querySelectorAll("input, select")].filter((c) => !c.disabled);
  }

  async function saveSettings(event) {
    event.preventDefault();
    const changes = {};
    for (const input of editableControls()) {
      input.classList.remove("invalid");
      input.removeAttribute("aria-invalid");
      const value = controlValue(input);
      if (value !== input.dataset.original) changes[input.name] = value;
    }
    const keys = Object.keys(changes);
    if (!keys.length) return settingsMessage("Nothing changed.", true);
    try {
      await api("POST", "/api/settings", changes);
    } catch (err) {
      if (err.field) {
        const input = $(`setting-${err.field}`);
        if (input) {
          input.classList.add("invalid");
          input.setAttribute("aria-invalid", "true");
          input.focus();
        }
      }
      return settingsMessage(`Not saved: ${err.message}`, false);
    }
    for (const input of editableControls()) input.dataset.original = controlValue(input);
    settingsMessage(`Saved ${keys.join(", ")}. Restart the worker to apply (claude-mem worker restart).`, true);
  }

  // --- token ---------------------------------------------------------------------------------------------

  function askToken(message) {
    state.locked = true;
    disconnect();
    clearTimeout(state.statusTimer);
    setConn("off", "locked");
    $("token-panel").hidden = false;
    $("token-error").hidden = !message;
    $("token-error").textContent = message || "";
    $("token-input").focus();
  }

  function submitToken(event) {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-input").value = "";
    $("token-panel").hidden = true;
    state.locked = false;
    boot();
  }

  // --- start -------------------------------------------------------------------------------------------

  async function boot() {
    $("token-forget").hidden = !getToken();
    try {
      await loadSettings(); // also tells us whether the token (or no token) is accepted
    } catch (err) {
      if (err.status === 401) return;
      settingsMessage(`Settings unavailable: ${err.message}`, false);
    }
    connect();
    pollStatus();
  }

  function wire() {
    $("search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const query = $("search-input").value.trim();
      if (query) runSearch(query);
      else clearSearch();
    });
    $("search-clear").addEventListener("click", clearSearch);
    for (const id of ["filter-project", "filter-type"]) {
      $(id).addEventListener("change", () => {
        connect();
        if (state.query) runSearch(state.query);
      });
    }
    for (const id of ["overview-project", "overview-days"]) $(id).addEventListener("change", loadOverview);
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => showView(tab.dataset.view));
    }
    $("session-back").addEventListener("click", () => {
      state.session = null;
      showView("feed");
    });
    $("session-more").addEventListener("click", loadSession);
    $("session-open").addEventListener("click", () => {
      if (state.selected && state.selected.session) openSession(state.selected.session);
    });
    $("feed-more-button").addEventListener("click", loadOlder);
    if ("IntersectionObserver" in window) {
      const watcher = new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) loadOlder();
      }, { rootMargin: "0px 0px 600px 0px" });
      watcher.observe($("feed-more"));
    }
    window.addEventListener("scroll", () => { if (state.view === "feed") checkOlder(); }, { passive: true });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        for (const chart of document.querySelectorAll(".chart")) if (chart.redraw && chart.offsetParent) chart.redraw();
      }, 150);
    });
    $("details-close").addEventListener("click", closeDetails);
    $("delete-button").addEventListener("click", deleteSelected);
    $("delete-cancel").addEventListener("click", resetDelete);
    $("settings-form").addEventListener("submit", saveSettings);
    $("token-form").addEventListener("submit", submitToken);
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape") closeDetails();
      if (e.key === "/" && document.activeElement === document.body) {
        e.preventDefault();
        $("search-input").focus();
      }
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && !state.locked) pollStatus();
    });
    setInterval(() => {
      for (const node of document.querySelectorAll(".card-time")) node.textContent = when(Number(node.dataset.ms));
    }, 30000);
  }

  wire();
  boot();
})();
