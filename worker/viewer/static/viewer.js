/* claude-mem viewer: live feed (server-sent events), search, details and delete, status, settings.
 *
 * Plain browser JavaScript with no build step. Stored text (prompts, tool output the memory agent
 * summarised) is only ever inserted as text nodes, never as HTML, and the page's CSP forbids inline
 * script: nothing a memory contains can run here.
 *
 * Auth: when the worker has a token, it is asked for once and kept in sessionStorage (this tab only);
 * fetches send it as `Authorization: Bearer`, and the EventSource, which cannot send headers, as
 * `/stream?token=`.
 */
(() => {
  "use strict";

  const TOKEN_KEY = "claude-mem-worker-token";
  const MAX_FEED = 300;
  const STATUS_EVERY_MS = 4000;
  const RECONNECT_MS = 3000;
  const OBS_TYPES = ["bugfix", "feature", "refactor", "change", "discovery", "decision"];
  const SEARCH_TYPES = { prompt: "prompts", observation: "observations", summary: "sessions" };
  const SUMMARY_FIELDS = [
    ["request", "Request"], ["investigated", "Investigated"], ["learned", "Learned"],
    ["completed", "Completed"], ["next_steps", "Next steps"], ["notes", "Notes"],
  ];

  const $ = (id) => document.getElementById(id);
  const state = {
    items: new Map(), // key -> feed entry, for the live feed
    projects: new Set(),
    es: null,
    reconnectTimer: null,
    statusTimer: null,
    selected: null,
    query: "",
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
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
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
    return `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
  }

  const ref = (kind, id) => ({ observation: `#${id}`, summary: `S${id}`, prompt: `P${id}` }[kind] || `${id}`);
  const label = (entry) => (entry.kind === "observation" ? entry.type || "observation" : entry.kind);

  function setConn(kind, text) {
    const node = $("conn");
    node.className = `conn conn-${kind}`;
    node.textContent = text;
  }

  // --- cards (feed items and search hits share one look) ---------------------------------------------

  function fromHit(hit) {
    return {
      key: `${hit.kind}:${hit.id}`, kind: hit.kind, id: hit.id, type: hit.type, project: hit.project,
      title: hit.kind === "prompt" ? "User prompt" : hit.title, snippet: hit.snippet, text: hit.snippet,
      createdAt: hit.created_at_epoch, sources: hit.sources || [],
    };
  }

  function card(entry, fresh) {
    const title = entry.kind === "prompt"
      ? `User prompt${entry.promptNumber ? ` ${entry.promptNumber}` : ""}` : entry.title || "(untitled)";
    const body = entry.kind === "prompt" ? entry.text || entry.snippet : entry.snippet;
    const li = el("li", {
      class: `card kind-${entry.kind}${fresh ? " fresh" : ""}`, "data-key": entry.key, tabindex: "0",
    });
    li.append(el("div", { class: "card-head" },
      el("span", { class: `badge kind-${entry.kind}`, text: label(entry) }),
      el("span", { class: "card-title", text: title }),
      el("time", {
        class: "card-time", "data-ms": entry.createdAt, title: new Date(entry.createdAt).toLocaleString(),
        text: when(entry.createdAt),
      })));
    if (body && body !== title) li.append(el("p", { class: "card-body", text: body }));
    const meta = el("div", { class: "card-meta" }, el("span", { text: ref(entry.kind, entry.id) }));
    if (entry.project) meta.append(el("span", { text: entry.project }));
    if (entry.session) meta.append(el("span", { title: entry.session, text: `session ${entry.session.slice(0, 8)}` }));
    if (entry.sources && entry.sources.length) meta.append(el("span", { text: `matched by ${entry.sources.join(" + ")}` }));
    li.append(meta);
    if (state.selected && state.selected.key === entry.key) li.classList.add("selected");
    li.addEventListener("click", () => select(entry));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter") select(entry); });
    return li;
  }

  function refreshEmpty() {
    const searching = !$("results").hidden;
    const empty = searching ? $("results").children.length === 0 : state.items.size === 0;
    $("empty").hidden = !empty;
    $("empty").textContent = searching
      ? "No results."
      : "Waiting for memories… prompts, observations and summaries appear here as they are stored.";
    const n = state.items.size;
    $("feed-count").textContent = `${n} item${n === 1 ? "" : "s"} in the feed`;
  }

  // --- the live feed -----------------------------------------------------------------------------------

  function rememberProjects(names) {
    let added = false;
    for (const name of names) {
      if (name && !state.projects.has(name)) {
        state.projects.add(name);
        added = true;
      }
    }
    if (!added) return;
    const menu = $("filter-project");
    const current = menu.value;
    const options = [el("option", { value: "", text: "All projects" })];
    for (const name of [...state.projects].sort((a, b) => a.localeCompare(b))) {
      options.push(el("option", { value: name, text: name }));
    }
    menu.replaceChildren(...options);
    menu.value = current;
  }

  function renderSnapshot(data) {
    state.items.clear();
    const feed = $("feed");
    feed.replaceChildren();
    for (const item of data.items || []) {
      if (state.items.has(item.key)) continue;
      state.items.set(item.key, item);
      feed.append(card(item, false));
    }
    rememberProjects(data.projects || []);
    rememberProjects((data.items || []).map((i) => i.project));
    refreshEmpty();
  }

  function addLive(item) {
    rememberProjects([item.project]);
    if (state.items.has(item.key)) return;
    state.items.set(item.key, item);
    const feed = $("feed");
    feed.prepend(card(item, true));
    while (feed.children.length > MAX_FEED) {
      const last = feed.lastElementChild;
      state.items.delete(last.dataset.key);
      last.remove();
    }
    refreshEmpty();
  }

  function removeEverywhere(key) {
    state.items.delete(key);
    for (const node of document.querySelectorAll(".card")) {
      if (node.dataset.key === key) node.remove();
    }
    refreshEmpty();
  }

  function streamUrl() {
    const params = new URLSearchParams();
    const project = $("filter-project").value;
    const type = $("filter-type").value;
    if (project) params.set("project", project);
    if (type) params.set("type", type);
    const token = getToken();
    if (token) params.set("token", token);
    const query = params.toString();
    return query ? `/stream?${query}` : "/stream";
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
    const params = new URLSearchParams({ query, mode: "hybrid", limit: "30" });
    const project = $("filter-project").value;
    const type = $("filter-type").value;
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
    $("search-summary").textContent = `${n} result${n === 1 ? "" : "s"} for “${query}” · ${res.modeUsed}`;
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
    if (prompt) lines.push(`prompt ${prompt}`);
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
  }

  function renderSummary(entry) {
    $("details-title").textContent = `Summary ${ref("summary", entry.id)}`;
    const fields = entry.fields || {};
    const parts = SUMMARY_FIELDS.flatMap(([name, title]) => section(title, fields[name]));
    $("details-body").replaceChildren(
      ...(parts.length ? parts : section("Summary", entry.snippet)),
      ...section("Session", sessionLines(entry, {})),
    );
  }

  function renderPrompt(entry) {
    $("details-title").textContent = `Prompt ${ref("prompt", entry.id)}`;
    $("details-body").replaceChildren(
      ...section("Prompt", entry.text || entry.snippet),
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
    for (const node of document.querySelectorAll(".card.selected")) node.classList.remove("selected");
  }

  async function select(entry) {
    state.selected = entry;
    for (const node of document.querySelectorAll(".card")) {
      node.classList.toggle("selected", node.dataset.key === entry.key);
    }
    resetDelete();
    $("details").hidden = false;
    if (window.matchMedia("(max-width: 900px)").matches) $("details").scrollIntoView({ block: "start" });
    $("details-actions").hidden = entry.kind !== "observation";
    if (entry.kind === "summary") return renderSummary(entry);
    if (entry.kind === "prompt") return renderPrompt(entry);
    $("details-title").textContent = `Observation ${ref("observation", entry.id)}`;
    $("details-body").replaceChildren(el("p", { class: "muted", text: "Loading…" }));
    try {
      const obs = await api("GET", `/api/observation/${entry.id}`);
      if (state.selected === entry) renderObservation(entry, obs);
    } catch (err) {
      if (state.selected !== entry) return;
      if (err.status === 404) {
        $("details-body").replaceChildren(el("p", { class: "muted", text: "This observation no longer exists." }));
        $("details-actions").hidden = true;
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
    return `${where}, ${health}; ${sum(v.synced)} synced${unsynced ? `, ${unsynced} waiting` : ""}`;
  }

  function renderStatus(st) {
    const q = st.queue || {};
    setCount("count-pending", q.pending);
    setCount("count-processing", q.processing);
    setCount("count-failed", q.failed, true);
    const error = $("status-error");
    error.hidden = !st.lastError;
    error.textContent = st.lastError ? `Last error: ${st.lastError}` : "";
    // The queue's last error often repeats a gateway problem word for word: show it once.
    const same = (a, b) => Boolean(a && b && (a.includes(b) || b.includes(a)));
    const problems = ((st.gateway && st.gateway.problems) || []).filter((p) => !same(p, st.lastError));
    for (const r of (st.failedReasons || []).slice(0, 3)) problems.push(`${r.count} failed: ${r.reason || "unknown"}`);
    $("status-problems").replaceChildren(...problems.map((p) => el("li", { text: p })));
    $("status-problems").hidden = problems.length === 0;
    $("st-provider").textContent = st.authMethod && st.provider === "claude"
      ? `${st.provider} (${st.authMethod})` : st.provider || "–";
    $("st-model").textContent = st.model || "–";
    $("st-base-url").textContent = st.baseUrl || "— (not set)";
    $("st-agent").textContent = st.isProcessing
      ? `processing ${st.activeSessions} session${st.activeSessions === 1 ? "" : "s"}`
      : st.queueDepth ? `${st.queueDepth} waiting` : "idle";
    $("st-vectors").textContent = vectorsText(st.vectors);
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

  // --- settings ----------------------------------------------------------------------------------------

  function settingInput(key, value) {
    const common = { name: key, id: `setting-${key}`, "data-original": value };
    if (value === "true" || value === "false") {
      const menu = el("select", common,
        el("option", { value: "true", text: "true" }), el("option", { value: "false", text: "false" }));
      menu.value = value;
      return menu;
    }
    return el("input", { ...common, type: "text", value, spellcheck: "false", autocomplete: "off" });
  }

  function renderSettings(data) {
    // {settings, readOnly, readOnlyNote, catalogue}: routing and security settings are shown, not editable.
    const values = data.settings || {};
    const readOnly = new Set(data.readOnly || []);
    const rows = Object.keys(values).sort().map((key) => {
      const input = settingInput(key, String(values[key] ?? ""));
      if (readOnly.has(key)) {
        input.disabled = true;
        input.title = data.readOnlyNote || "read-only";
      }
      return el("label", { title: key }, key.replace(/^CLAUDE_MEM_/, ""), input);
    });
    $("settings-fields").replaceChildren(...rows);
  }

  async function loadSettings() {
    renderSettings(await api("GET", "/api/settings"));
  }

  function settingsMessage(text, ok) {
    const node = $("settings-message");
    node.hidden = false;
    node.className = `small ${ok ? "ok-text" : "error-text"}`;
    node.textContent = text;
  }

  async function saveSettings(event) {
    event.preventDefault();
    const changes = {};
    for (const input of $("settings-fields").querySelectorAll("input, select")) {
      input.classList.remove("invalid");
      if (!input.disabled && input.value !== input.dataset.original) changes[input.name] = input.value;
    }
    const keys = Object.keys(changes);
    if (!keys.length) return settingsMessage("Nothing changed.", true);
    try {
      await api("POST", "/api/settings", changes);
    } catch (err) {
      if (err.field) {
        const input = $(`setting-${err.field}`);
        if (input) input.classList.add("invalid");
      }
      return settingsMessage(`Not saved: ${err.message}`, false);
    }
    for (const input of $("settings-fields").querySelectorAll("input, select")) input.dataset.original = input.value;
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
