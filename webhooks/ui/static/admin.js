// crm-health admin page: loads everything from the JSON API with the session cookie.
// No build step and no inline script (CSP script-src 'self'): this one file serves every page,
// chosen by <body data-page>.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const BANDS = ["healthy", "neutral", "at_risk", "unknown", "onboarding"];
  const BAND_LABELS = {
    healthy: "Healthy",
    neutral: "Neutral",
    at_risk: "At risk",
    unknown: "Unknown",
    onboarding: "Onboarding",
    not_customer: "Not a customer",
  };
  // The signals in the server's order with their labels, rendered into the page from the
  // signal registry as [["active_use", "Active use"], ...].
  const SIGNAL_LABELS = Object.fromEntries(JSON.parse(document.body.dataset.signalLabels || "[]"));
  const DAY_MS = 86400000;
  const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

  let session = null; // {role, connection, name, csrf_token, expires_at}

  // --- helpers -------------------------------------------------------------------------------

  const $ = (selector, root = document) => root.querySelector(selector);

  /** An element with attributes (class, text, on<event>, others as attributes) and children. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  /** A table with a caption for screen readers, one row of column headings (each its text, or
   * [text, "num"] for a column of numbers) and the body's `rows`. */
  function dataTable(attrs, caption, headings, rows) {
    const heading = (h) => {
      const [text, kind] = Array.isArray(h) ? h : [h, null];
      return el("th", { scope: "col", class: kind, text });
    };
    return el(
      "table",
      attrs,
      el("caption", { class: "visually-hidden", text: caption }),
      el("thead", {}, el("tr", {}, headings.map(heading))),
      el("tbody", {}, rows),
    );
  }

  /** A table in a box of its own, which scrolls sideways when the table is wider than the page. */
  function scrollBox(table) {
    return el("div", { class: "table-wrap" }, table);
  }

  /** A table's body emptied for `items`; with none, one row across its `columns` says `empty`. */
  function clearRows(selector, items, { columns, empty }) {
    const body = clear($(selector));
    if (!items.length) body.append(el("tr", {}, el("td", { colspan: columns, text: empty })));
    return body;
  }

  // A paged list (the accounts, the alerts): `state` holds its limit and offset, the page's
  // address keeps it, and the pager under the table steps through it.

  function keepInAddress(path, state) {
    history.replaceState(null, "", `${path}${query(state) ? `?${query(state)}` : ""}`);
  }

  function showPage(data) {
    const last = data.offset + data.items.length;
    $("#page-info").textContent = `${data.total ? data.offset + 1 : 0}–${last} of ${data.total}`;
    $("#prev-page").disabled = data.offset === 0;
    $("#next-page").disabled = last >= data.total;
  }

  function stepPages(state, reload) {
    $("#prev-page").addEventListener("click", () => {
      state.offset = Math.max(0, state.offset - state.limit);
      reload();
    });
    $("#next-page").addEventListener("click", () => {
      state.offset += state.limit;
      reload();
    });
  }

  function bandBadge(band) {
    return el("span", { class: `band band-${band}`, text: BAND_LABELS[band] || band });
  }

  /** A signal as the page names it: the registry's label, a custom signal's own (from the
   * configuration `config`, when known), else its name. */
  function signalLabel(name, config = null) {
    if (SIGNAL_LABELS[name]) return SIGNAL_LABELS[name];
    const custom = config ? config.custom_signals.find((signal) => signal.name === name) : null;
    return (custom && custom.label) || name;
  }

  /** An indicator as the page names it everywhere: "Active use: recency_days", a custom one
   * by its label. */
  function indicatorLabel(signal, name, config = null) {
    const custom = config ? config.custom_indicators.find((found) => found.signal === signal && found.name === name) : null;
    return `${signalLabel(signal, config)}: ${(custom && custom.label) || name}`;
  }

  function fmtScore(score) {
    return score === null || score === undefined ? "—" : String(Math.round(score));
  }

  function fmtNumber(value) {
    if (value === null || value === undefined) return "—";
    return String(Number(Number(value).toFixed(3)));
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function trendCell(trend) {
    if (trend === null || trend === undefined) return el("span", { class: "muted", text: "n/a" });
    const arrow = trend > 2 ? "▲" : trend < -2 ? "▼" : "▶";
    const cls = trend > 2 ? "trend-up" : trend < -2 ? "trend-down" : "";
    return el(
      "span",
      { class: cls },
      el("span", { "aria-hidden": "true", text: `${arrow} ` }),
      trend > 0 ? `+${trend}` : String(trend),
    );
  }

  function showError(message) {
    const box = $("#error");
    if (box) box.textContent = message || "";
  }

  function showStatus(message) {
    const box = $("#status");
    if (box) box.textContent = message || "";
  }

  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  function detailText(detail) {
    if (Array.isArray(detail)) {
      return detail
        .map((item) => {
          const loc = (item.loc || []).filter((part) => part !== "body").join(".");
          return loc ? `${loc}: ${item.msg}` : item.msg;
        })
        .join("; ");
    }
    return typeof detail === "string" ? detail : JSON.stringify(detail);
  }

  function loginUrl() {
    return `/admin/login?next=${encodeURIComponent(location.pathname + location.search)}`;
  }

  /** Call the API with the session cookie; unsafe methods carry the session's CSRF token. */
  async function api(method, path, { body, headers = {} } = {}) {
    const options = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    if (UNSAFE.has(method) && session) options.headers["X-CSRF-Token"] = session.csrf_token;
    const response = await fetch(path, options);
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    if (response.status === 401 && document.body.dataset.page !== "login") {
      location.assign(loginUrl());
      throw new ApiError(401, "Your session has ended: sign in again.", data);
    }
    if (!response.ok) {
      const message = data && data.detail !== undefined ? detailText(data.detail) : response.statusText;
      throw new ApiError(response.status, message, data);
    }
    return { data, response };
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== "" && value !== null && value !== undefined) search.set(name, String(value));
    }
    return search.toString();
  }

  /** The band a person reads: a prospect is "not a customer", never an unknown band. */
  function shownBand(item) {
    return item.customer === false ? "not_customer" : item.band;
  }

  function isAdmin() {
    return session && (session.role === "admin" || session.role === "global_admin");
  }

  /** The connection whose settings the key may change; null for a global admin. */
  function settingsScope() {
    return session ? session.settings_scope : null;
  }

  function failed(error) {
    if (error instanceof ApiError && error.status === 401) return;
    showError(error instanceof ApiError ? error.message : `Something went wrong: ${error}`);
  }

  // --- charts --------------------------------------------------------------------------------

  function dayValue(day) {
    const [y, m, d] = day.split("-").map(Number);
    return Date.UTC(y, m - 1, d);
  }

  /** A step line through (time, score) points, broken where the score is null. */
  function stepPath(points, x, y, end) {
    let d = "";
    points.forEach(([at, score], index) => {
      if (score === null || score === undefined) return;
      const next = index + 1 < points.length ? points[index + 1][0] : end;
      const py = y(score).toFixed(1);
      const previous = index > 0 ? points[index - 1][1] : null;
      d += previous === null || previous === undefined ? `M${x(at).toFixed(1)},${py}` : `V${py}`;
      d += `H${x(next).toFixed(1)}`;
    });
    return d;
  }

  /** An account's last 90 days of scores, scaled to its own range (a drop from 72 to 49 fills
   * the box instead of a quarter of a 0-100 one). With `bands` (the configuration's
   * {at_risk_below, healthy_min}) the band edges inside that range are drawn as faint lines and
   * the last point takes the colour of its band. */
  function sparkline(points, { bands = null } = {}) {
    const scored = points.filter(([, score]) => score !== null && score !== undefined);
    if (!scored.length) return el("span", { class: "muted", text: "no scores" });
    const width = 120;
    const height = 28;
    const end = Date.now();
    const start = end - 90 * DAY_MS;
    const series = points.map(([day, score]) => [Math.max(dayValue(day), start), score]);
    const values = scored.map(([, score]) => score);
    let low = Math.min(...values);
    let high = Math.max(...values);
    // A little room above and below, and at least 12 points of range: a flat line or a
    // one-point wobble stays a small move, not a cliff.
    const pad = Math.max(2, (high - low) * 0.12);
    low -= pad;
    high += pad;
    if (high - low < 12) {
      const middle = (high + low) / 2;
      low = middle - 6;
      high = middle + 6;
    }
    const x = (t) => 1 + ((t - start) / (end - start)) * (width - 4);
    const y = (score) => height - 3 - ((score - low) / (high - low)) * (height - 6);
    const first = scored[0][1];
    const last = scored[scored.length - 1][1];
    const [lastAt, lastScore] = series[series.length - 1];
    const edges = bands ? [bands.at_risk_below, bands.healthy_min].filter((edge) => edge > low && edge < high) : [];
    return svg(
      "svg",
      {
        class: "sparkline",
        width,
        height,
        viewBox: `0 0 ${width} ${height}`,
        role: "img",
        "aria-label": first === last && scored.length === 1 ? `Score ${last} over 90 days` : `Score ${first} → ${last} over 90 days`,
        "data-low": Math.round(low),
        "data-high": Math.round(high),
      },
      [...new Set(edges)].map((edge) => svg("line", { class: "edge", x1: 0, x2: width, y1: y(edge).toFixed(1), y2: y(edge).toFixed(1), "data-edge": edge })),
      svg("path", { class: "line", d: stepPath(series, x, y, end) }),
      lastScore === null
        ? null
        : svg("circle", {
            class: bands ? `dot dot-${bandOf(lastScore, bands)}` : "dot",
            cx: x(Math.max(lastAt, end - DAY_MS)).toFixed(1),
            cy: y(lastScore).toFixed(1),
            r: 2.5,
          }),
    );
  }

  // --- pages ---------------------------------------------------------------------------------

  function safeNext() {
    const next = new URLSearchParams(location.search).get("next") || "";
    return /^\/admin(\/|$|\?)/.test(next) && !next.startsWith("/admin/login") ? next : "/admin";
  }

  function initLogin() {
    const form = $("#login-form");
    const input = $("#key");
    const error = $("#login-error");
    input.focus();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      const key = input.value.trim();
      if (!key) {
        error.textContent = "Enter an API key.";
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      const button = $("button[type=submit]", form);
      button.disabled = true;
      try {
        await api("POST", "/api/v1/session", { body: { key } });
        location.assign(safeNext());
      } catch (err) {
        const status = err instanceof ApiError ? err.status : 0;
        error.textContent =
          status === 401
            ? "That key is unknown or revoked."
            : status === 403
              ? `This key cannot sign in: ${err.message}`
              : status === 422
                ? "Enter an API key."
                : `Could not sign in: ${err.message || err}`;
        input.setAttribute("aria-invalid", "true");
        input.focus();
        input.select();
      } finally {
        button.disabled = false;
      }
    });
  }

  // Alerts ----------------------------------------------------------------------------------

  function alertStatusText(alert) {
    return alertStateText(alert) + heldText(alert) + (alert.quiet ? ` · nobody told: ${alert.quiet}` : "");
  }

  // The alert's other open reasons: one alert per account lists every condition that holds.
  function otherReasons(alert) {
    return (alert.reasons || [])
      .filter((r) => r.resolved_at === null && !(r.rule === alert.rule && r.key === alert.key))
      .map((r) => el("span", { class: "hint", text: `Also (${r.severity}): ${r.title}, ${r.reason}` }));
  }

  function alertStateText(alert) {
    if (alert.status === "snoozed") return `Snoozed until ${fmtTime(alert.snoozed_until)}`;
    if (alert.status === "acknowledged") return `Acknowledged${alert.acknowledged_by ? ` by ${alert.acknowledged_by}` : ""}`;
    if (alert.status === "resolved") return `Resolved ${fmtTime(alert.resolved_at)}`;
    return "Open";
  }

  // A channel that used its daily limit holds the rest for its overflow digest at UTC midnight:
  // say so, or the alert looks as if nobody will ever be told.
  function heldText(alert) {
    const held = (alert.deliveries || []).filter((d) => d.overflow && d.status === "pending");
    if (!held.length) return "";
    const channels = [...new Set(held.map((d) => d.channel))].join(", ");
    return ` · held over the daily limit of ${channels} until ${fmtTime(held[0].available_at)}`;
  }

  async function alertAction(alert, action, after) {
    showError("");
    try {
      const body = action === "snooze" ? { hours: 24 } : {};
      await api("POST", `/api/v1/alerts/${alert.id}/${action}`, { body });
      showStatus(action === "snooze" ? `Alert ${alert.id} snoozed for 24 hours.` : `Alert ${alert.id} acknowledged.`);
      await after();
    } catch (err) {
      failed(err);
    }
  }

  function alertsTable(items, after) {
    const admin = isAdmin();
    return dataTable(
      { class: "alerts" },
      "Alerts",
      ["Fired", "Rule", "Alert", "Band", "Status", "Actions"],
      items.map((alert) => alertRow(alert, admin, after, false)),
    );
  }

  function alertRow(alert, admin, after, withAccount) {
    const acknowledgeable = alert.status === "open" || alert.status === "snoozed";
    const snoozable = alert.status !== "resolved";
    const why = admin ? null : "Needs an admin key";
    return el(
      "tr",
      { "data-alert": alert.id },
      el("td", { text: fmtTime(alert.fired_at) }),
      withAccount
        ? el("td", {}, el("a", { href: `/admin/accounts/${encodeURIComponent(alert.account.id)}`, text: alert.account.name || alert.account.id }))
        : null,
      el("td", {}, alert.rule, el("span", { class: "hint", text: alert.severity ? `${alert.severity} severity` : "" })),
      el("th", { scope: "row" }, alert.title, el("span", { class: "hint", text: alert.reason }), ...otherReasons(alert)),
      el("td", {}, bandBadge(alert.band), ` ${fmtScore(alert.score)}`),
      el("td", { class: "alert-status", text: alertStatusText(alert) }),
      el(
        "td",
        { class: "row-actions" },
        el("button", {
          type: "button",
          class: "ack",
          text: "Acknowledge",
          "aria-label": `Acknowledge alert ${alert.id}: ${alert.title}`,
          title: why,
          disabled: !admin || !acknowledgeable,
          onclick: () => alertAction(alert, "acknowledge", after),
        }),
        el("button", {
          type: "button",
          class: "snooze",
          text: "Snooze 24 h",
          "aria-label": `Snooze alert ${alert.id} for 24 hours: ${alert.title}`,
          title: why,
          disabled: !admin || !snoozable,
          onclick: () => alertAction(alert, "snooze", after),
        }),
      ),
    );
  }

  function initAlerts() {
    const params = new URLSearchParams(location.search);
    const state = {
      status: params.get("status") || "",
      rule: params.get("rule") || "",
      limit: Number(params.get("limit")) || 50,
      offset: Number(params.get("offset")) || 0,
    };
    const form = $("#alert-filters");
    form.elements.status.value = state.status;
    form.elements.rule.value = state.rule;

    async function load() {
      keepInAddress("/admin/alerts", state);
      const { data } = await api("GET", `/api/v1/alerts?${query(state)}`);
      const body = clearRows("#alerts-table tbody", data.items, { columns: 7, empty: "No alerts match." });
      const admin = isAdmin();
      for (const alert of data.items) body.append(alertRow(alert, admin, load, true));
      showPage(data);
    }

    const reload = () => load().catch(failed);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      state.status = form.elements.status.value;
      state.rule = form.elements.rule.value.trim();
      state.offset = 0;
      reload();
    });
    form.addEventListener("reset", () => setTimeout(() => form.requestSubmit(), 0));
    stepPages(state, reload);
    api("GET", "/api/v1/config")
      .then(({ data }) => {
        clear($("#rules")).append(...data.config.alerts.map((rule) => el("option", { value: rule.name })));
      })
      .catch(() => {});
    reload();
  }

  // Configuration -----------------------------------------------------------------------------

  // Configuration editors: alert rules, segment overrides, a connection's alert routing ------
  //
  // Every control carries the field path the server names in its answers (data-field, e.g.
  // alerts.2.points), so a 422 or 403 lands on the input it is about. Controls inside a list
  // item hold their path relative to the item (data-sub) and get the full one from `renumber`,
  // so removing an item never leaves a stale index behind.

  const RULE_KINDS = [
    ["band_entered", "The account entered a band"],
    ["score_drop", "The score dropped"],
    ["indicator_at_risk", "An indicator is at risk"],
    ["renewal_near", "Renewal is near and the account is not healthy"],
    ["sentiment_ending", "A CSM sentiment ends soon"],
  ];

  // Every field of an alert rule (signals/config.py AlertRule), in the order shown: the one
  // place to change when a field is added. `kinds`: the `when` values it applies to (absent:
  // all); outside them it is sent as its `fallback`, so a rule switched to another kind still
  // validates. `optional`: sent only when set, otherwise the server's default applies.
  const RULE_FIELDS = [
    { name: "name", label: "Name", input: "text", hint: "Lower-case letters, digits, and . _ - (up to 64)" },
    { name: "when", label: "Raised when", input: "select", options: () => RULE_KINDS },
    { name: "band", label: "Band entered", input: "select", kinds: ["band_entered"], fallback: "at_risk", options: () => [["at_risk", "At risk"], ["neutral", "Neutral"]] },
    {
      name: "bands",
      label: "Raised while the account is",
      input: "select",
      kinds: ["renewal_near"],
      fallback: ["neutral", "at_risk"],
      options: () => [["neutral,at_risk", "Neutral or at risk (not healthy)"], ["at_risk", "At risk only"]],
      toInput: (value) => (value || ["neutral", "at_risk"]).join(","),
      fromInput: (text) => text.split(","),
    },
    { name: "points", label: "Drop of at least (points)", input: "number", kinds: ["score_drop"], fallback: 15 },
    { name: "days", label: "Within (days)", input: "integer", kinds: ["score_drop", "renewal_near", "sentiment_ending"], fallback: 30 },
    { name: "indicator", label: "Indicator", input: "select", kinds: ["indicator_at_risk"], fallback: null, options: (ctx) => ctx.indicators },
    {
      name: "trigger",
      label: "Raised on",
      input: "select",
      kinds: ["indicator_at_risk"],
      fallback: "transition",
      options: () => [["transition", "A change: fine before, at risk now"], ["state", "Every scoring while it is at risk"]],
    },
    { name: "severity", label: "Severity", input: "select", optional: true, options: () => [["", "The default for its kind"], ["low", "Low"], ["medium", "Medium"], ["high", "High"]] },
    { name: "segments", label: "Only for segments", input: "list", hint: "Segment override names or account segments, comma-separated; empty: every account" },
    { name: "channels", label: "Channels", input: "channels" },
    { name: "cooldown_days", label: "Cool-down before raising again (days)", input: "number" },
    { name: "notify_recovered", label: "Tell the channels when it recovers", input: "checkbox" },
    { name: "enabled", label: "Enabled", input: "checkbox" },
  ];

  const NEW_RULE = {
    name: "",
    when: "band_entered",
    band: "at_risk",
    points: 15,
    days: 30,
    indicator: null,
    trigger: "transition",
    bands: ["neutral", "at_risk"],
    segments: [],
    channels: [],
    cooldown_days: 7,
    notify_recovered: false,
    enabled: true,
  };

  const CHANGES_HINT =
    'JSON, only what differs from the configuration, in its shape, e.g. {"bands": {"healthy_min": 75}, "signals": {"active_use": {"weight": 0.5}}}';

  let fieldSeq = 0;

  function nextId(stem) {
    fieldSeq += 1;
    return `${stem}${fieldSeq}`;
  }

  /** A control with its label, an optional hint and an error line of its own. `sub` is its
   * path within the list item it belongs to (or its full path outside one). */
  function field(sub, label, control, { hint = null } = {}) {
    const id = nextId("f");
    control.id = id;
    control.dataset.sub = sub;
    control.dataset.field = sub;
    const hintNode = hint ? el("span", { class: "hint", id: `${id}-hint`, text: hint }) : null;
    control.setAttribute("aria-describedby", hintNode ? `${id}-hint ${id}-error` : `${id}-error`);
    const check = control.type === "checkbox";
    return el(
      "div",
      { class: check ? "field check" : "field" },
      check ? [control, el("label", { for: id, text: label })] : [el("label", { for: id, text: label }), control],
      hintNode,
      el("span", { class: "field-error", id: `${id}-error` }),
    );
  }

  /** A fieldset that owns the problems no single control of it does (a rule as a whole, a
   * set of checkboxes): its error line follows the legend. */
  function group(sub, attrs, legend, ...children) {
    const id = nextId("g");
    return el(
      "fieldset",
      { ...attrs, id, "data-sub": sub, "data-field": sub, "aria-describedby": `${id}-error` },
      legend,
      el("span", { class: "field-error", id: `${id}-error` }),
      ...children,
    );
  }

  /** Gives each item of a list its index: the item is `base.i`, its controls `base.i.sub`. */
  function renumber(items, base) {
    items.forEach((item, index) => {
      const path = `${base}.${index}`;
      item.dataset.field = path;
      for (const node of item.querySelectorAll("[data-sub]")) {
        node.dataset.field = node.dataset.sub ? `${path}.${node.dataset.sub}` : path;
      }
    });
  }

  function selectInput(options, value) {
    const known = options.some(([option]) => option === (value ?? ""));
    const node = el(
      "select",
      {},
      // A value this page does not offer stays chosen (and visible) rather than being replaced.
      known || value === null || value === undefined ? null : el("option", { value, text: `${value} (not known here)` }),
      options.map(([option, text]) => el("option", { value: option, text })),
    );
    node.value = value ?? "";
    return node;
  }

  function numberValue(input, problems, { integer = false } = {}) {
    const text = input.value.trim();
    const value = Number(text);
    if (text === "" || !Number.isFinite(value)) problems.push({ path: input.dataset.field, message: "enter a number" });
    else if (integer && !Number.isInteger(value)) problems.push({ path: input.dataset.field, message: "enter a whole number" });
    return value;
  }

  /** Checkboxes of the channels the key may route to. Names already chosen that are not
   * offered (not in the channels file, or not open to this key) stay listed and chosen, and
   * the chosen order is kept, so an untouched list sends what it got. */
  function channelPicker(sub, legend, chosen, offered, { legendHidden = false } = {}) {
    const names = offered.map((channel) => channel.name);
    for (const name of chosen) if (!names.includes(name)) names.push(name);
    const kinds = Object.fromEntries(offered.map((channel) => [channel.name, channel.kind]));
    const boxes = names.map((name) => {
      const box = el("input", { type: "checkbox", id: nextId("c"), value: name });
      box.checked = chosen.includes(name);
      return box;
    });
    const node = group(
      sub,
      { class: "channels" },
      el("legend", { class: legendHidden ? "visually-hidden" : null, text: legend }),
      names.length
        ? el(
            "div",
            { class: "checks" },
            boxes.map((box) =>
              el(
                "span",
                { class: "check" },
                box,
                el("label", { for: box.id, text: box.value in kinds ? `${box.value} (${kinds[box.value]})` : `${box.value} (not offered to this key)` }),
              ),
            ),
          )
        : el("p", { class: "hint", text: "No alert channel is open to this key (the channels file, CRM_HEALTH_ALERT_CHANNELS_FILE, lists them)." }),
    );
    const read = () => {
      const ticked = boxes.filter((box) => box.checked).map((box) => box.value);
      return [...chosen.filter((name) => ticked.includes(name)), ...ticked.filter((name) => !chosen.includes(name))];
    };
    return { node, read };
  }

  /** One alert rule's form; `read` returns the rule (fields this page does not know kept). */
  function ruleCard(rule, ctx) {
    const readers = {};
    const wrappers = {};
    const legend = el("legend", { text: `Rule ${rule.name || "(new)"}` });
    const preview = el("p", { class: "rule-preview", "aria-live": "polite", hidden: true });
    for (const spec of RULE_FIELDS) {
      const value = rule[spec.name];
      let control;
      if (spec.input === "channels") {
        const picker = channelPicker(spec.name, spec.label, value || [], ctx.channels);
        readers[spec.name] = picker.read;
        wrappers[spec.name] = el("div", { class: "field wide-field" }, picker.node);
        continue;
      }
      if (spec.input === "select") {
        control = selectInput(spec.options(ctx), spec.toInput ? spec.toInput(value) : value);
        readers[spec.name] = () => (spec.fromInput ? spec.fromInput(control.value) : control.value);
      } else if (spec.input === "checkbox") {
        control = el("input", { type: "checkbox" });
        control.checked = Boolean(value);
        readers[spec.name] = () => control.checked;
      } else if (spec.input === "list") {
        control = el("input", { type: "text", value: (value || []).join(", ") });
        readers[spec.name] = () =>
          control.value
            .split(",")
            .map((part) => part.trim())
            .filter(Boolean);
      } else if (spec.input === "number" || spec.input === "integer") {
        control = el("input", { type: "number", step: spec.input === "integer" ? "1" : "any", class: "num", value: value ?? spec.fallback ?? "" });
        readers[spec.name] = (problems) => numberValue(control, problems, { integer: spec.input === "integer" });
      } else {
        control = el("input", { type: "text", value: value ?? "", autocomplete: "off", spellcheck: "false" });
        readers[spec.name] = () => control.value.trim();
      }
      wrappers[spec.name] = field(spec.name, spec.label, control, { hint: spec.hint });
    }
    const whenSelect = $("select", wrappers.when);
    const nameInput = $("input", wrappers.name);
    const applies = (spec, when) => !spec.kinds || spec.kinds.includes(when);
    function showKind() {
      for (const spec of RULE_FIELDS) wrappers[spec.name].hidden = !applies(spec, whenSelect.value);
    }
    const shownName = () => nameInput.value.trim() || "(new)";
    const removeButton = ctx.editable
      ? el("button", { type: "button", class: "remove", text: "Remove this rule", "aria-label": `Remove rule ${shownName()}`, onclick: () => ctx.remove(node) })
      : null;
    whenSelect.addEventListener("change", showKind);
    nameInput.addEventListener("input", () => {
      legend.textContent = `Rule ${shownName()}`;
      if (removeButton) removeButton.setAttribute("aria-label", `Remove rule ${shownName()}`);
    });
    showKind();
    const node = group(
      "",
      { class: "rule" },
      legend,
      el("div", { class: "rule-grid" }, RULE_FIELDS.map((spec) => wrappers[spec.name])),
      preview,
      removeButton ? el("p", { class: "actions" }, removeButton) : null,
    );
    function read(problems) {
      const value = structuredClone(rule);
      const when = whenSelect.value;
      for (const spec of RULE_FIELDS) {
        if (!applies(spec, when)) {
          if ("fallback" in spec) value[spec.name] = spec.fallback;
          continue;
        }
        const found = readers[spec.name](problems);
        if (spec.optional && (found === "" || found === null)) delete value[spec.name];
        else value[spec.name] = found;
      }
      return value;
    }
    function showPreview(total) {
      clear(preview);
      // Before a new preview answers, the old counts would describe another candidate.
      preview.hidden = total === null;
      if (total === null) return;
      if (!total) {
        preview.textContent = "Preview: this rule is not in the candidate.";
        return;
      }
      const names = total.accounts.map((account) => account.name || account.id);
      const more = total.accounts_total - names.length;
      preview.append(
        el("strong", { text: "Preview: " }),
        !total.enabled
          ? "disabled, raises nothing."
          : total.total === 0
            ? "no new alert."
            : `${total.total} new ${total.total === 1 ? "alert" : "alerts"} on ${total.accounts_total} ${total.accounts_total === 1 ? "account" : "accounts"}: ${names.join(", ")}${more > 0 ? ` and ${more} more` : ""}.`,
      );
    }
    node.ruleLink = { read, showPreview };
    // Shown disabled for keys that may not change rules that apply to every connection.
    if (!ctx.editable) node.disabled = true;
    return node;
  }

  function ruleList(rules, ctx) {
    const list = el("div", { class: "rule-list" });
    const items = () => [...list.children];
    const cardCtx = {
      ...ctx,
      remove(card) {
        card.remove();
        renumber(items(), "alerts");
        showStatus("Rule removed from the form: Preview or Apply to use it.");
        addButton.focus();
      },
    };
    for (const rule of rules) list.append(ruleCard(rule, cardCtx));
    renumber(items(), "alerts");
    const addButton = el("button", {
      type: "button",
      id: "add-rule",
      text: "Add an alert rule",
      disabled: !ctx.editable,
      onclick: () => {
        const card = ruleCard(structuredClone(NEW_RULE), cardCtx);
        list.append(card);
        renumber(items(), "alerts");
        $("input", card).focus();
      },
    });
    const node = el(
      "fieldset",
      { id: "rules-editor", "data-field": "alerts", disabled: !ctx.editable, "aria-describedby": "rules-editor-error" },
      el("legend", { text: "Alert rules" }),
      el("span", { class: "field-error", id: "rules-editor-error" }),
      el("p", { class: "hint", text: "When to tell people about an account, and whom. Preview shows, per rule, how many new alerts it would raise and for whom." }),
      list,
      el("p", { class: "actions" }, addButton),
    );
    return {
      node,
      read: (problems) => items().map((card) => card.ruleLink.read(problems)),
      showPreview(totals) {
        // The preview lists the candidate's rules in the form's order; null hides the counts.
        items().forEach((card, index) => card.ruleLink.showPreview(totals === null ? null : totals[index]));
      },
    };
  }

  /** One segment override: its name, the attribute values it matches, its changes (JSON). */
  function segmentCard(segment, ctx) {
    const name = el("input", { type: "text", value: segment.name || "", autocomplete: "off" });
    const shownName = () => name.value.trim() || "(new)";
    const legend = el("legend", { text: `Segment override ${shownName()}` });
    const removeButton = ctx.editable
      ? el("button", { type: "button", class: "remove", text: "Remove this segment override", "aria-label": `Remove segment override ${shownName()}`, onclick: () => ctx.remove(node) })
      : null;
    name.addEventListener("input", () => {
      legend.textContent = `Segment override ${shownName()}`;
      if (removeButton) removeButton.setAttribute("aria-label", `Remove segment override ${shownName()}`);
    });
    const rows = el("div", { class: "match-rows" });
    function matchRow(attribute, value) {
      const key = el("input", { type: "text", value: attribute, class: "match-key", autocomplete: "off", "aria-label": "Attribute" });
      const wanted = el("input", { type: "text", value, class: "match-value", autocomplete: "off", "aria-label": "Value" });
      const row = el(
        "div",
        { class: "match-row" },
        key,
        el("span", { "aria-hidden": "true", text: " = " }),
        wanted,
        el("button", {
          type: "button",
          text: "Remove",
          class: "match-remove",
          onclick: () => {
            row.remove();
            relabel();
          },
        }),
      );
      return row;
    }
    function relabel() {
      [...rows.children].forEach((row, index) => {
        $(".match-key", row).setAttribute("aria-label", `Condition ${index + 1}: attribute`);
        $(".match-value", row).setAttribute("aria-label", `Condition ${index + 1}: value`);
        $(".match-remove", row).setAttribute("aria-label", `Remove condition ${index + 1}`);
      });
    }
    for (const [attribute, value] of Object.entries(segment.match || {})) rows.append(matchRow(attribute, value));
    if (!rows.children.length) rows.append(matchRow("", ""));
    relabel();
    const changesText = JSON.stringify(segment.changes || {}, null, 2);
    const changes = el("textarea", { rows: Math.min(12, Math.max(3, changesText.split("\n").length)), class: "wide code", spellcheck: "false" });
    changes.value = changesText;
    const node = group(
      "",
      { class: "segment" },
      legend,
      field("name", "Name", name),
      group(
        "match",
        { class: "match" },
        el("legend", { text: "Accounts whose attributes match all of" }),
        rows,
        el("button", {
          type: "button",
          text: "Add a condition",
          onclick: () => {
            rows.append(matchRow("", ""));
            relabel();
            $(".match-key", rows.lastElementChild).focus();
          },
        }),
      ),
      field("changes", "Changes for these accounts", changes, { hint: CHANGES_HINT }),
      removeButton ? el("p", { class: "actions" }, removeButton) : null,
    );
    node.segmentLink = {
      read(problems) {
        const value = structuredClone(segment);
        value.name = name.value.trim();
        const match = {};
        const matchPath = $(".match", node).dataset.field;
        for (const row of rows.children) {
          const attribute = $(".match-key", row).value.trim();
          const wanted = $(".match-value", row).value;
          if (!attribute && !wanted.trim()) continue;
          if (!attribute) problems.push({ path: matchPath, message: `a condition with the value "${wanted}" names no attribute` });
          else if (attribute in match) problems.push({ path: matchPath, message: `attribute ${attribute} is named twice` });
          else match[attribute] = wanted;
        }
        value.match = match;
        try {
          const parsed = JSON.parse(changes.value.trim() || "{}");
          if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
            problems.push({ path: changes.dataset.field, message: 'must be a JSON object, e.g. {"bands": {"healthy_min": 75}}' });
          }
          value.changes = parsed;
        } catch (err) {
          problems.push({ path: changes.dataset.field, message: `not valid JSON (${err.message})` });
        }
        return value;
      },
    };
    if (!ctx.editable) node.disabled = true;
    return node;
  }

  function segmentList(base, segments, { editable, legend, hint }) {
    const list = el("div", { class: "segment-list" });
    const items = () => [...list.children];
    const ctx = {
      editable,
      remove(card) {
        card.remove();
        renumber(items(), base);
        showStatus("Segment override removed from the form: Preview or Apply to use it.");
        addButton.focus();
      },
    };
    for (const segment of segments) list.append(segmentCard(segment, ctx));
    renumber(items(), base);
    const addButton = el("button", {
      type: "button",
      class: "add-segment",
      text: "Add a segment override",
      disabled: !editable,
      onclick: () => {
        const card = segmentCard({ name: "", match: {}, changes: {} }, ctx);
        list.append(card);
        renumber(items(), base);
        $("input", card).focus();
      },
    });
    const id = nextId("s");
    const node = el(
      "fieldset",
      { class: "segments-editor", id, "data-field": base, disabled: !editable, "aria-describedby": `${id}-error` },
      el("legend", { text: legend }),
      el("span", { class: "field-error", id: `${id}-error` }),
      el("p", { class: "hint", text: hint }),
      segments.length ? null : el("p", { class: "muted empty-note", text: "None yet." }),
      list,
      el("p", { class: "actions" }, addButton),
    );
    addButton.addEventListener("click", () => {
      const note = $(".empty-note", node);
      if (note) note.remove();
    });
    return { node, read: (problems) => items().map((card) => card.segmentLink.read(problems)) };
  }

  const SENTIMENT_MODES = [
    ["indicator", "Counts as an indicator"],
    ["cap", "Caps the band"],
    ["override", "Sets the band"],
  ];
  const SOURCE_KINDS = [
    ["product_events", "Product events"],
    ["survey", "Survey answers"],
    ["crm_property", "A field of the CRM record"],
  ];
  // A CRM-property source names the field in each CRM, as that CRM spells it.
  const PROPERTY_CRMS = [
    ["hubspot", "HubSpot", "a company property's internal name, e.g. nps_score"],
    ["salesforce", "Salesforce", "an Account field's API name, e.g. NPS__c"],
    ["dynamics", "Dynamics 365", "an account column's logical name, e.g. new_npsscore"],
  ];
  const PROPERTY_VALUES = [
    ["number", "Its number"],
    ["days_since", "Days since its date"],
    ["days_until", "Days until its date"],
  ];
  const SURVEYS = [
    ["nps", "NPS"],
    ["csat", "CSAT"],
    ["ces", "CES"],
  ];
  const SURVEY_AGGREGATIONS = [
    ["mean", "Mean score"],
    ["latest", "Latest answer"],
    ["nps", "NPS (promoters - detractors)"],
    ["responses", "Number of answers"],
  ];
  const AGGREGATIONS = [
    ["events", "Events"],
    ["users", "Distinct users"],
    ["events_per_user", "Events per user"],
    ["events_per_seat", "Events per seat"],
    ["users_per_seat", "Users per seat"],
    ["share_of_active_users", "Share of active users (30 days)"],
  ];

  /** A list of cards the admin adds to and removes from (custom signals, custom indicators):
   * `card(value, remove)` makes one, with a `read(problems)` of its own. */
  function cardList(base, values, { editable, legend, hint, addText, blank, card, id }) {
    const list = el("div", { class: "card-list" });
    const items = () => [...list.children];
    const remove = (node) => {
      node.remove();
      renumber(items(), base);
      showStatus(`${legend}: removed from the form; Preview or Apply to use the change.`);
      addButton.focus();
    };
    for (const value of values) list.append(card(value, remove));
    renumber(items(), base);
    const addButton = el("button", {
      type: "button",
      text: addText,
      disabled: !editable,
      onclick: () => {
        const note = $(".empty-note", node);
        if (note) note.remove();
        const added = card(structuredClone(blank), remove);
        list.append(added);
        renumber(items(), base);
        $("input", added).focus();
      },
    });
    const node = el(
      "fieldset",
      { class: "card-editor", id, "data-field": base, disabled: !editable, "aria-describedby": `${id}-error` },
      el("legend", { text: legend }),
      el("span", { class: "field-error", id: `${id}-error` }),
      el("p", { class: "hint", text: hint }),
      values.length ? null : el("p", { class: "muted empty-note", text: "None yet." }),
      list,
      el("p", { class: "actions" }, addButton),
    );
    return { node, read: (problems) => items().map((item) => item.read(problems)) };
  }

  function textField(sub, label, value, hint = null) {
    const input = el("input", { type: "text", value: value ?? "", autocomplete: "off" });
    return [field(sub, label, input, { hint }), input];
  }

  function numberField(sub, label, value, hint = null) {
    const input = el("input", { type: "text", inputmode: "decimal", class: "num", value: String(value ?? ""), autocomplete: "off" });
    return [field(sub, label, input, { hint }), input];
  }

  /** One custom signal: its name, label and weight in the composite. */
  function customSignalCard(signal, remove) {
    const [nameField, name] = textField("name", "Name", signal.name, "lowercase words joined by _, e.g. adoption");
    const [labelField, label] = textField("label", "Label", signal.label);
    const [weightField, weight] = numberField("weight", "Weight in the composite", signal.weight, "beside the four signals' weights");
    const shown = () => name.value.trim() || "(new)";
    const legend = el("legend", { text: `Custom signal ${shown()}` });
    const removeButton = el("button", { type: "button", class: "remove", text: "Remove this custom signal", onclick: () => remove(node) });
    name.addEventListener("input", () => (legend.textContent = `Custom signal ${shown()}`));
    const node = group("", { class: "custom-signal" }, legend, el("div", { class: "cfg-grid" }, nameField, labelField, weightField), el("p", { class: "actions" }, removeButton));
    node.read = (problems) => ({ name: name.value.trim(), label: label.value.trim(), weight: numberValue(weight, problems) });
    return node;
  }

  /** One custom indicator: what it is called, the signal it counts in, its source (product
   * events of some features, aggregated over a window) and its thresholds and weight. */
  function customIndicatorCard(signalNames, explain = () => null) {
    return (indicator, remove) => {
      const source = indicator.source || {};
      const kindOf = source.kind || "product_events";
      const events = kindOf === "product_events" ? source : {};
      const answers = kindOf === "survey" ? source : {};
      const property = kindOf === "crm_property" ? source : {};
      const [nameField, name] = textField("name", "Name", indicator.name, "lowercase words joined by _, e.g. exports_per_seat");
      const [labelField, label] = textField("label", "Label", indicator.label, "as drivers show it, e.g. Report exports per seat (30d)");
      const signal = selectInput(signalNames(), indicator.signal);
      const kind = selectInput(SOURCE_KINDS, kindOf);
      // Product events: which features, what of them, over which window.
      const [featuresField, features] = textField("source.features", "Features", (events.features || []).join(", "), "event or feature names, comma-separated, any case");
      const aggregation = selectInput(AGGREGATIONS, events.aggregation);
      const [daysField, days] = numberField("source.days", "Window, days", events.days ?? 30);
      const eventFields = el("div", { class: "cfg-grid" }, featuresField, field("source.aggregation", "Measure", aggregation), daysField);
      // Survey answers: which survey, what of its answers, over which window, from how many.
      const survey = selectInput(SURVEYS, answers.survey);
      const surveyAggregation = selectInput(SURVEY_AGGREGATIONS, answers.aggregation);
      const [surveyDaysField, surveyDays] = numberField("source.days", "Answers of the last, days", answers.days ?? 90);
      const [leastField, least] = numberField("source.min_responses", "At least this many answers", answers.min_responses ?? 3, "for the mean and NPS; fewer is no data");
      const surveyFields = el("div", { class: "cfg-grid" }, field("source.survey", "Survey", survey), field("source.aggregation", "Measure of the answers", surveyAggregation), surveyDaysField, leastField);
      // A field of the CRM record: its name in each CRM the connections use, and what of it.
      const propertyNames = PROPERTY_CRMS.map(([crm, crmLabel, hint]) => [crm, ...textField(`source.${crm}`, `Field in ${crmLabel}`, property[crm] ?? "", hint)]);
      const propertyValue = selectInput(PROPERTY_VALUES, property.value || "number");
      const propertyFields = el("div", { class: "cfg-grid" }, ...propertyNames.map(([, node]) => node), field("source.value", "What of the field", propertyValue));
      const showKind = () => {
        eventFields.hidden = kind.value !== "product_events";
        surveyFields.hidden = kind.value !== "survey";
        propertyFields.hidden = kind.value !== "crm_property";
      };
      kind.addEventListener("change", showKind);
      showKind();
      // The thresholds' unit follows the source: a share of active users is typed in %.
      const unitNow = () => sourceUnit({ kind: kind.value, aggregation: kind.value === "survey" ? surveyAggregation.value : aggregation.value, value: propertyValue.value });
      const unitFrom = unitNow();
      const scaleOf = (unit) => (UNITS[unit] || UNITS.number).scale;
      const [atRiskField, atRisk] = numberField("at_risk", "At risk at", shownNumber(indicator.at_risk, scaleOf(unitFrom)));
      const [healthyField, healthy] = numberField("healthy", "Healthy at", shownNumber(indicator.healthy, scaleOf(unitFrom)), "below 'at risk' when lower is better");
      const unitLine = el("p", { class: "hint ind-unit" });
      const showUnit = () => {
        unitLine.textContent = (UNITS[unitNow()] || UNITS.number).text;
      };
      for (const select of [kind, aggregation, surveyAggregation, propertyValue]) select.addEventListener("change", showUnit);
      showUnit();
      // Untouched under the unit it was drawn in, a threshold goes back exactly as it came.
      const threshold = (input, stored, problems) => {
        if (input.value === input.defaultValue && unitNow() === unitFrom) return stored;
        const value = numberValue(input, problems);
        return Number.isFinite(value) ? storedNumber(value, scaleOf(unitNow())) : value;
      };
      const explanation = indicator.name ? explain(indicator.signal, indicator.name) : null;
      const [weightField, weight] = numberField("weight", "Weight in its signal", indicator.weight ?? 1);
      const optional = el("input", { type: "checkbox" });
      optional.checked = Boolean(indicator.optional);
      const shown = () => label.value.trim() || name.value.trim() || "(new)";
      const legend = el("legend", { text: `Custom indicator ${shown()}` });
      for (const input of [name, label]) input.addEventListener("input", () => (legend.textContent = `Custom indicator ${shown()}`));
      const removeButton = el("button", { type: "button", class: "remove", text: "Remove this custom indicator", onclick: () => remove(node) });
      const node = group(
        "",
        { class: "custom-indicator" },
        legend,
        explanation ? el("p", { class: "hint ind-explanation", text: explanation }) : null,
        el("div", { class: "cfg-grid" }, nameField, labelField, field("signal", "Signal", signal), field("source.kind", "Source", kind)),
        eventFields,
        surveyFields,
        propertyFields,
        unitLine,
        el("div", { class: "cfg-grid" }, atRiskField, healthyField, weightField),
        field("optional", "Optional: an account without its data is not short of evidence", optional),
        el("p", { class: "actions" }, removeButton),
      );
      const readProperty = () => ({
        kind: "crm_property",
        ...Object.fromEntries(propertyNames.map(([crm, , input]) => [crm, input.value.trim() || null])),
        value: propertyValue.value,
      });
      const readSource = (problems) =>
        kind.value === "crm_property"
          ? readProperty()
          : kind.value === "survey"
          ? {
              kind: "survey",
              survey: survey.value,
              aggregation: surveyAggregation.value,
              days: numberValue(surveyDays, problems, { integer: true }),
              min_responses: numberValue(least, problems, { integer: true }),
            }
          : {
              kind: "product_events",
              features: features.value.split(",").map((part) => part.trim()).filter((part) => part !== ""),
              aggregation: aggregation.value,
              days: numberValue(days, problems, { integer: true }),
            };
      node.read = (problems) => ({
        ...indicator,
        name: name.value.trim(),
        label: label.value.trim(),
        signal: signal.value,
        source: readSource(problems),
        at_risk: threshold(atRisk, indicator.at_risk, problems),
        healthy: threshold(healthy, indicator.healthy, problems),
        weight: numberValue(weight, problems),
        optional: optional.checked,
      });
      return node;
    };
  }

  /** A connection's routing of the global rules: raised or not, the rule's channels or
   * others. Only rules routed differently get an entry (and those that had one keep it). */
  function routingEditor(own, rules, routes, offered, editable) {
    const base = `connections.${own}.alerts`;
    const rows = rules.map((rule) => {
      const route = routes[rule.name];
      const enabled = el("input", { type: "checkbox", "data-field": `${base}.${rule.name}.enabled`, "aria-label": `Raise ${rule.name} for connection ${own}` });
      enabled.checked = route ? route.enabled : true;
      const ownChannels = rule.channels.length ? rule.channels.join(", ") : "none";
      const mode = el(
        "select",
        { "aria-label": `Channels of ${rule.name} for connection ${own}` },
        el("option", { value: "rule", text: `The rule's (${ownChannels})` }),
        el("option", { value: "other", text: "Others for this connection" }),
      );
      mode.value = route && route.channels !== null && route.channels !== undefined ? "other" : "rule";
      const picker = channelPicker(`${base}.${rule.name}.channels`, `Channels of ${rule.name} for connection ${own}`, (route && route.channels) || [], offered, {
        // The column header says "Channels"; the full legend is for screen readers.
        legendHidden: true,
      });
      picker.node.dataset.field = `${base}.${rule.name}.channels`;
      const showPicker = () => {
        picker.node.hidden = mode.value !== "other";
      };
      mode.addEventListener("change", showPicker);
      showPicker();
      const errorId = nextId("r");
      enabled.setAttribute("aria-describedby", `${errorId}-error`);
      enabled.id = errorId;
      const row = el(
        "tr",
        { "data-rule": rule.name },
        el("th", { scope: "row", text: rule.name }),
        el("td", {}, enabled, el("span", { class: "field-error", id: `${errorId}-error` })),
        el("td", {}, mode, picker.node),
      );
      row.read = () => {
        const value = { channels: mode.value === "other" ? picker.read() : null, enabled: enabled.checked };
        const routed = value.channels !== null || !value.enabled;
        return routed || route ? value : null;
      };
      return row;
    });
    const node = el(
      "fieldset",
      { id: "routing-editor", "data-field": base, disabled: !editable, "aria-describedby": "routing-editor-error" },
      el("legend", { text: `Alert routing for connection ${own}` }),
      el("span", { class: "field-error", id: "routing-editor-error" }),
      el("p", { class: "hint", text: "Whether each rule raises alerts for this connection's accounts, and where they go: the rule's own channels, or others (none: recorded, nobody told)." }),
      scrollBox(
        el(
          "table",
          { id: "routing-table" },
          el("caption", { class: "visually-hidden", text: `Alert routing for connection ${own}` }),
          el("thead", {}, el("tr", {}, ["Rule", "Raised", "Channels"].map((text) => el("th", { scope: "col", text })))),
          el("tbody", {}, rows),
        ),
      ),
    );
    return {
      node,
      read() {
        // Routes of rules no longer in force are kept: the server names them if they no
        // longer validate, rather than the page dropping them unseen.
        const value = {};
        for (const [name, route] of Object.entries(routes)) if (!rules.some((rule) => rule.name === name)) value[name] = route;
        for (const row of rows) {
          const found = row.read();
          if (found) value[row.dataset.rule] = found;
        }
        return value;
      },
    };
  }

  // Answers that name fields -------------------------------------------------------------------

  const NAMED = /^([A-Za-z0-9_][A-Za-z0-9_.-]*): ([\s\S]*)$/;
  const SOURCE_KIND_NAMES = new Set(SOURCE_KINDS.map(([kind]) => kind));

  function joinPath(base, sub) {
    return base && sub ? `${base}.${sub}` : base || sub;
  }

  /** Every problem of an answer as {path, message}, path relative to the configuration.
   * FastAPI's list gives a loc (body.config.alerts.2) and a message that may name a field of
   * it ("indicator: ..."); the service's text is "config.alerts.2: indicator: ...; ...". A
   * check of the whole configuration names full paths in its message. */
  function fieldProblems(err) {
    const detail = err.body ? err.body.detail : undefined;
    const problems = [];
    const add = (base, message) => {
      for (const part of String(message).split("; ")) {
        let path = base;
        let text = part;
        for (let depth = 0; depth < 2; depth += 1) {
          const named = NAMED.exec(text);
          if (!named) break;
          path = joinPath(path, named[1].replace(/^config(\.|$)/, ""));
          text = named[2];
        }
        problems.push({ path, message: text });
      }
    };
    if (Array.isArray(detail)) {
      for (const item of detail) {
        const loc = (item.loc || [])
          .filter((part, index) => !(index === 0 && part === "body"))
          // pydantic names a custom source's kind after `source` (source.survey.days), which
          // is no field of the document (source.days).
          .filter((part, index, all) => !(index && all[index - 1] === "source" && SOURCE_KIND_NAMES.has(part)))
          .map(String);
        if (loc[0] === "config") loc.shift();
        add(loc.join("."), item.msg);
      }
    } else if (typeof detail === "string") {
      add("", detail);
    }
    return problems;
  }

  /** The control whose path is `path`, else the closest enclosing one (a rule, a list). */
  function fieldFor(root, path) {
    let best = null;
    for (const node of root.querySelectorAll("[data-field]")) {
      // A hidden control (the fields of a source kind not chosen) cannot show an error.
      if (node.closest("[hidden]")) continue;
      const at = node.dataset.field;
      if (at === path) return node;
      if (path.startsWith(`${at}.`) && (!best || at.length > best.dataset.field.length)) best = node;
    }
    return best;
  }

  function clearFieldErrors(root) {
    for (const node of root.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
    for (const node of root.querySelectorAll(".field-error")) node.textContent = "";
  }

  /** A control's own label as shown (its data-label, else its <label>, else its aria-label);
   * `short`: without the configuration name some labels end with ("Healthy from score
   * (healthy_min)"). */
  function ownLabel(node, { short = false } = {}) {
    const label = node.dataset.label || (node.labels && node.labels.length ? node.labels[0].textContent : node.getAttribute("aria-label")) || "";
    const name = (node.dataset.field || "").split(".").pop();
    return (short && name ? label.replace(new RegExp(`\\s*\\(${name}\\)$`), "") : label).trim();
  }

  /** Where a control is, in the words on screen: the legends of the fieldsets around it, the
   * row it is in (an indicator: data-crumb), then its own label, joined by ›. */
  function screenName(node) {
    const crumbs = [];
    for (let at = node.parentElement; at && at !== document.body; at = at.parentElement) {
      if (at.matches("fieldset")) {
        const legend = [...at.children].find((child) => child.matches("legend"));
        if (legend) crumbs.unshift(legend.dataset.label || legend.textContent.trim());
      } else if (at.dataset.crumb) crumbs.unshift(at.dataset.crumb);
    }
    if (node.matches("fieldset")) {
      const legend = [...node.children].find((child) => child.matches("legend"));
      if (legend) crumbs.push(legend.dataset.label || legend.textContent.trim());
    } else crumbs.push(ownLabel(node));
    return crumbs.filter(Boolean).join(" › ");
  }

  /** The visible control at exactly `path`, if any. */
  function controlAt(root, path) {
    return [...root.querySelectorAll("[data-field]")].find((node) => node.dataset.field === path && !node.closest("[hidden]")) || null;
  }

  /** The message with the configuration names of `target`'s neighbours (at_risk, healthy_min)
   * replaced by their labels on screen, quoted. */
  function inScreenWords(root, target, message) {
    const parent = target.dataset.field.split(".").slice(0, -1).join(".");
    return message.replace(/\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b/g, (word) => {
      const node = controlAt(root, joinPath(parent, word));
      return node && node !== target && !node.matches("fieldset") ? `“${ownLabel(node, { short: true })}”` : word;
    });
  }

  /** Shows each problem on its control (or the closest group); focuses the first. A check of a
   * group whose message starts with one of its fields' names ("at_risk_below (80) must not
   * exceed healthy_min (60)") lands on that field. Returns the problems as the page names
   * them ("Bands › At risk below score: …"), for the summary. */
  function showFieldErrors(root, problems) {
    let first = null;
    const named = [];
    for (const { path, message } of problems) {
      let target = path ? fieldFor(root, path) : null;
      if (!target) {
        named.push(path ? `${path}: ${message}` : message);
        continue;
      }
      if (path === target.dataset.field && !target.matches("input, select, textarea")) {
        const lead = /^([a-z][a-z0-9_]*)\b/.exec(message);
        const child = lead ? controlAt(target, joinPath(path, lead[1])) : null;
        if (child && !child.matches("fieldset")) target = child;
      }
      const text = target.dataset.field === path || path.startsWith(`${target.dataset.field}.`) ? inScreenWords(root, target, message) : message;
      target.setAttribute("aria-invalid", "true");
      const line = document.getElementById(`${target.id}-error`);
      const rest = path === target.dataset.field || !path.startsWith(`${target.dataset.field}.`) ? "" : `${path.slice(target.dataset.field.length + 1)}: `;
      if (line) line.textContent = `${line.textContent ? `${line.textContent} ` : ""}${rest}${text}`;
      named.push(`${screenName(target)}${rest ? ` › ${rest.slice(0, -2)}` : ""}: ${text}`);
      if (!first) first = target;
    }
    if (first) {
      // A control inside a closed <details> is opened first so the focus is visible.
      const details = first.closest("details");
      if (details) details.open = true;
      (first.matches("fieldset") ? $("input, select, textarea", first) || first : first).focus();
    }
    return named;
  }

  /** The error box with `intro` and, below it, each problem on a line of its own. */
  function showProblems(intro, lines) {
    const box = $("#error");
    if (!box) return;
    clear(box).append(el("p", { text: intro }), lines.length ? el("ul", {}, lines.map((line) => el("li", { text: line }))) : null);
  }

  // How an indicator's thresholds are typed and read, by its unit (GET /api/v1/indicators):
  // ratios and changes as percentages (40 for 0.4; the configuration keeps 0.4).
  const UNITS = {
    percent: { scale: 100, suffix: "%", text: "Thresholds in %" },
    change: { scale: 100, suffix: "%", text: "Thresholds in % change" },
    days: { scale: 1, suffix: "days", text: "Thresholds in days" },
    count: { scale: 1, suffix: "", text: "Thresholds as a count" },
    number: { scale: 1, suffix: "", text: "Thresholds as a number" },
  };

  /** A custom indicator's unit, from its source (as signals.config's sources say it). */
  function sourceUnit(source) {
    if (source.kind === "survey") return source.aggregation === "responses" ? "count" : "number";
    if (source.kind === "crm_property") return source.value === "number" ? "number" : "days";
    if (source.aggregation === "share_of_active_users") return "percent";
    return source.aggregation === "events" || source.aggregation === "users" ? "count" : "number";
  }

  /** A stored value as the input shows it: × scale, without the float's noise (7, not
   * 7.000000000000001). */
  function shownNumber(value, scale = 1) {
    if (value === null || value === undefined || value === "") return "";
    return scale === 1 ? String(value) : String(Number((Number(value) * scale).toPrecision(12)));
  }

  /** An input's number as stored: ÷ its scale (percentages back to ratios). */
  function storedNumber(value, scale = 1) {
    return scale === 1 ? value : Number((value / scale).toPrecision(12));
  }

  /** A share as a percentage: "25%", "8.7%" (one decimal below 10), "under 0.1%". */
  function shareText(share) {
    const percent = share * 100;
    if (percent > 0 && percent < 0.05) return "under 0.1%";
    return `${percent < 10 ? Number(percent.toFixed(1)) : Math.round(percent)}%`;
  }

  /** A weight as the share it carries: "1 of 4 → 25% of Active use", and with `ofScore` (the
   * signal's share of the score) what that is of the score, the figure the account page
   * shows ("10% of the score"); weight 0 counts nothing. */
  function weightShare(weight, total, whole, ofScore = null) {
    if (weight === null || total === null) return "—";
    if (weight === 0) return "not counted (weight 0)";
    const inWhole = `${fmtNumber(weight)} of ${fmtNumber(total)} → ${shareText(weight / total)} of ${whole}`;
    return ofScore ? `${inWhole}, ${shareText((weight / total) * ofScore)} of the score` : inWhole;
  }

  /** A weight input's value, or null when it is not a number of 0 or more. */
  function weightValue(input) {
    if (!input) return null;
    const text = input.value.trim();
    const value = Number(text);
    return text !== "" && Number.isFinite(value) && value >= 0 ? value : null;
  }

  /** The band edges of `bands` as words, per band; null for the bands without edges. */
  function bandEdges(bands, band) {
    if (band === "healthy") return `${fmtNumber(bands.healthy_min)} or more`;
    if (band === "neutral") return `${fmtNumber(bands.at_risk_below)} to under ${fmtNumber(bands.healthy_min)}`;
    if (band === "at_risk") return `below ${fmtNumber(bands.at_risk_below)}`;
    return null;
  }

  // The bands with edges, left to right on a 0–100 score scale.
  const BAND_SCALE = ["at_risk", "neutral", "healthy"];
  const NO_CONNECTION_SETTINGS = { segments: [], alerts: {} };
  // Accounts the preview names per rule (it counts them all).
  const RULE_ACCOUNTS = 10;

  function initConfig() {
    let documentInForce = null;
    // What the form was drawn from, and what a candidate starts from: the configuration in
    // force, or a draft with a suggestion's thresholds and weights (takeSuggestion).
    let base = null;
    let etag = null;
    // A suggestion handed over by the calibration page: taken once, so that a reload or a
    // later visit starts from the configuration in force again.
    const suggestion = tabStore.take(SUGGESTION_KEY);
    const admin = isAdmin();
    // A key bound to a connection changes only that connection's settings (connections.<name>).
    const scope = settingsScope();
    const own = session ? session.connection : "default";
    const applyButton = $("#apply");
    const form = $("#config-form");
    const fields = $("#config-fields");
    // Built by renderFields: the rule and segment editors (global admins edit them) and this
    // connection's own segment overrides and routing.
    let editors = null;
    if (!admin) {
      applyButton.disabled = true;
      applyButton.title = "Needs an admin key";
    }
    if (scope !== null) {
      $("#global-note").textContent = `Bands, signals, alert rules and segment overrides apply to every connection: only a global admin key changes them. Your key changes connection ${scope}'s settings below.`;
      $("#global-note").hidden = false;
    }
    // The channels this key may route to; a viewer (403) or a failed read offers none, and
    // channels already chosen stay listed either way.
    const channelsOffered = admin
      ? api("GET", "/api/v1/channels")
          .then(({ data }) => data.items)
          .catch(() => [])
      : Promise.resolve([]);

    // What each indicator is, from GET /api/v1/indicators: {signals: {name: signal}, indicators:
    // {"signal.indicator": indicator}} with labels, units and explanations. Empty when it cannot
    // be read: the editor then names indicators by their names and takes plain numbers.
    let catalogue = { signals: {}, indicators: {} };

    async function loadCatalogue() {
      try {
        const { data } = await api("GET", "/api/v1/indicators");
        const signals = {};
        const indicators = {};
        for (const signal of data.signals) {
          signals[signal.name] = signal;
          for (const indicator of signal.indicators) indicators[`${signal.name}.${indicator.name}`] = indicator;
        }
        catalogue = { signals, indicators };
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) throw err;
        catalogue = { signals: {}, indicators: {} };
      }
    }

    /** A number input of the configuration at `path`. `label` is its accessible name; `short`,
     * when given, is what shows (the rest of the label is for screen readers) and what the
     * error summary ends with. A `unit` with a scale (percentages) shows value × scale; the
     * candidate divides it back. */
    function numberInput(path, label, value, { short = null, unit = null, describedBy = [] } = {}) {
      const id = `cfg-${path.replaceAll(".", "-")}`;
      const scale = unit ? unit.scale : 1;
      const suffix = unit && unit.suffix ? el("span", { class: "unit", id: `${id}-unit`, text: unit.suffix }) : null;
      const labelNode = short
        ? el("label", { for: id, class: "cell-label" }, el("span", { class: "crumb", text: label.slice(0, label.length - short.length) }), short)
        : el("label", { for: id, text: label });
      return [
        labelNode,
        el(
          "span",
          { class: "with-unit" },
          el("input", {
            id,
            type: "text",
            inputmode: "decimal",
            autocomplete: "off",
            required: true,
            class: "num",
            "data-path": path,
            "data-field": path,
            "data-label": short,
            "data-scale": scale === 1 ? null : String(scale),
            "aria-describedby": [suffix ? suffix.id : null, ...describedBy, `${id}-error`].filter(Boolean).join(" "),
            value: shownNumber(value, scale),
          }),
          suffix,
        ),
        el("span", { class: "field-error", id: `${id}-error` }),
      ];
    }

    function renderEditors(config, offered) {
      const globalEditors = clear($("#global-editors"));
      const connectionEditor = clear($("#connection-editor"));
      const everyone = scope === null && admin;
      const indicators = [
        ...Object.entries(config.signals).flatMap(([signal, spec]) =>
          Object.keys(spec.indicators).map((indicator) => [`${signal}.${indicator}`, indicatorLabel(signal, indicator, config)]),
        ),
        ...config.custom_indicators.map((custom) => [`${custom.signal}.${custom.name}`, indicatorLabel(custom.signal, custom.name, config)]),
      ];
      const rules = ruleList(config.alerts, { editable: everyone, indicators, channels: offered });
      const segments = segmentList("segments", config.segments, {
        editable: everyone,
        legend: "Segment overrides (every connection)",
        hint: "Other thresholds or weights for accounts whose attributes match, e.g. segment = enterprise. The first override that matches applies.",
      });
      const customSignals = cardList("custom_signals", config.custom_signals, {
        editable: everyone,
        id: "custom-signals",
        legend: "Custom signals",
        hint: "Signals of your own, made of custom indicators, each with a weight in the composite beside the four.",
        addText: "Add a custom signal",
        blank: { name: "", label: "", weight: 0.1 },
        card: customSignalCard,
      });
      const customIndicators = cardList("custom_indicators", config.custom_indicators, {
        editable: everyone,
        id: "custom-indicators",
        legend: "Custom indicators",
        hint: "Indicators of your own from product usage: events or users of some features over a window, per user, per seat or as a share of active users. Scored 0 at 'at risk' and 100 at 'healthy', like the others.",
        addText: "Add a custom indicator",
        blank: { name: "", label: "", signal: "active_use", source: { kind: "product_events", features: [], aggregation: "users", days: 30 }, at_risk: 0, healthy: 1, weight: 1, optional: false },
        card: customIndicatorCard(
          () => [
            ...Object.keys(config.signals).map((name) => [name, SIGNAL_LABELS[name] || name]),
            ...customSignals.read([]).filter((signal) => signal.name).map((signal) => [signal.name, signal.label || signal.name]),
          ],
          (signal, name) => (catalogue.indicators[`${signal}.${name}`] || {}).explanation || null,
        ),
      });
      if (everyone) globalEditors.append(customSignals.node, customIndicators.node, rules.node, segments.node);
      else {
        // What applies to every connection, to read: the routing below refers to these rules.
        globalEditors.append(
          el(
            "details",
            { class: "card", id: "global-read-only" },
            el("summary", { text: "Custom indicators, alert rules and segment overrides of every connection (read only)" }),
            customSignals.node,
            customIndicators.node,
            rules.node,
            segments.node,
          ),
        );
      }
      const mine = config.connections[own] || NO_CONNECTION_SETTINGS;
      const ownSegments = segmentList(`connections.${own}.segments`, mine.segments, {
        editable: admin,
        legend: `Segment overrides of connection ${own} only`,
        hint: "Tried before the ones of every connection, for this connection's accounts only; a name must differ from theirs.",
      });
      const routing = routingEditor(own, config.alerts, mine.alerts, offered, admin);
      connectionEditor.append(
        el(
          "section",
          { class: "card", id: "connection-settings", "aria-labelledby": "connection-settings-title" },
          el("h2", { id: "connection-settings-title", text: `Settings of connection ${own} only` }),
          ownSegments.node,
          routing.node,
        ),
      );
      editors = { everyone, rules, segments, ownSegments, routing, customSignals, customIndicators };
    }

    /** The band edges the form holds, when they make bands (numbers, in order); else null. */
    function draftBands() {
      const read = (name) => {
        const input = controlAt(fields, `bands.${name}`);
        const text = input ? input.value.trim() : "";
        const value = Number(text);
        return text !== "" && Number.isFinite(value) ? value : null;
      };
      const bands = { healthy_min: read("healthy_min"), at_risk_below: read("at_risk_below") };
      const inOrder = bands.healthy_min !== null && bands.at_risk_below !== null && bands.at_risk_below >= 0 && bands.at_risk_below <= bands.healthy_min && bands.healthy_min <= 100;
      return inOrder ? bands : null;
    }

    function bandsText(bands) {
      return `At risk below ${fmtNumber(bands.at_risk_below)} · neutral ${bandEdges(bands, "neutral")} · healthy from ${fmtNumber(bands.healthy_min)}`;
    }

    /** The bands on a 0–100 scale, with the edges the form holds (a draft until applied) or,
     * when those make no bands, the edges in force; the caption says which. */
    function drawBandScale() {
      const figure = $("#band-scale");
      if (!figure || !documentInForce) return;
      const inForce = documentInForce.config.bands;
      const draft = draftBands();
      const drawn = draft || inForce;
      const edges = { at_risk: [0, drawn.at_risk_below], neutral: [drawn.at_risk_below, drawn.healthy_min], healthy: [drawn.healthy_min, 100] };
      for (const rect of figure.querySelectorAll("rect")) {
        const [from, to] = edges[rect.getAttribute("class").replace("bar-", "")];
        rect.setAttribute("x", fmtNumber(from));
        rect.setAttribute("width", fmtNumber(to - from));
      }
      const same = draft && draft.healthy_min === inForce.healthy_min && draft.at_risk_below === inForce.at_risk_below;
      $("figcaption", figure).textContent = same
        ? `In force: ${bandsText(inForce)}.`
        : draft
          ? `Draft, not applied: ${bandsText(draft)}. In force: ${bandsText(inForce)}.`
          : `In force: ${bandsText(inForce)}. The edges in the form make no bands (at risk below must not exceed healthy from, both 0 to 100).`;
    }

    /** Each weight as the share it carries, from the form as it stands: an indicator's of its
     * signal (with the signal's custom indicators and the CSM sentiment when it counts there),
     * a signal's of the score (with the custom signals). */
    function updateShares() {
      const at = (path) => controlAt(form, path);
      const extra = {};
      const add = (signal, weight, what) => {
        const found = (extra[signal] = extra[signal] || { weight: 0, readable: true, customs: 0, sentiment: null });
        if (weight === null) found.readable = false;
        else found.weight += weight;
        if (what === "sentiment") found.sentiment = weight;
        else found.customs += 1;
      };
      for (const card of form.querySelectorAll("fieldset.custom-indicator")) {
        const pick = at(`${card.dataset.field}.signal`);
        if (pick) add(pick.value, weightValue(at(`${card.dataset.field}.weight`)), "custom");
      }
      const mode = at("sentiment.mode");
      if (mode && mode.value === "indicator" && at("sentiment.signal")) add(at("sentiment.signal").value, weightValue(at("sentiment.weight")), "sentiment");
      const boxes = [...fields.querySelectorAll("fieldset[data-signal]")];
      const signalWeights = boxes.map((box) => weightValue(at(`signals.${box.dataset.signal}.weight`)));
      for (const card of form.querySelectorAll("fieldset.custom-signal")) signalWeights.push(weightValue(at(`${card.dataset.field}.weight`)));
      const score = signalWeights.includes(null) ? null : signalWeights.reduce((sum, weight) => sum + weight, 0);
      boxes.forEach((box, index) => {
        const signal = box.dataset.signal;
        const label = $("legend", box).textContent;
        $(".signal-share", box).textContent = weightShare(signalWeights[index], score, "the score");
        const ofScore = score && signalWeights[index] !== null ? signalWeights[index] / score : null;
        const rows = [...box.querySelectorAll("tr[data-indicator]")];
        const weights = rows.map((row) => weightValue(controlAt(row, `${row.dataset.field}.weight`)));
        const more = extra[signal] || { weight: 0, readable: true, customs: 0, sentiment: null };
        const total = weights.includes(null) || !more.readable ? null : weights.reduce((sum, weight) => sum + weight, 0) + more.weight;
        rows.forEach((row, i) => ($(".share", row).textContent = weightShare(weights[i], total, label, ofScore)));
        const parts = [
          more.customs ? `${more.customs} custom ${more.customs === 1 ? "indicator" : "indicators"}` : null,
          more.sentiment !== null ? `the CSM sentiment (weight ${fmtNumber(more.sentiment)})` : null,
        ].filter(Boolean);
        const note = $(".share-note", box);
        note.textContent = parts.length ? `The total weight of ${label} includes ${parts.join(" and ")}.` : "";
        note.hidden = !parts.length;
      });
    }

    // Counts previews asked for: an answer to an older one, or one that comes after the form
    // was redrawn (Apply, Reload, Roll back), is not shown.
    let previewSeq = 0;

    /** The preview and its per-rule counts gone: what they described is in force, or gone. */
    function clearPreview() {
      previewSeq += 1;
      $("#preview-result").hidden = true;
      clear($("#preview-body"));
      if (editors) editors.rules.showPreview(null);
    }

    /** After an edit, a preview on screen describes the form as it was: it says so. */
    function markPreviewStale() {
      const body = $("#preview-body");
      if ($("#preview-result").hidden || !$("#preview-bands", body) || $(".stale", body)) return;
      body.prepend(el("p", { class: "note stale", text: "The form changed after this preview: Preview again to see what the changes do." }));
    }

    function formEdited(event) {
      updateShares();
      if (event.target.closest("#bands")) drawBandScale();
      markPreviewStale();
    }
    form.addEventListener("input", formEdited);
    form.addEventListener("change", formEdited);
    // A custom indicator or signal added or removed changes the totals too.
    form.addEventListener("click", (event) => {
      if (event.target.closest("button")) queueMicrotask(updateShares);
    });

    function renderFields(config, offered) {
      clear(fields);
      const bands = config.bands;
      renderEditors(config, offered);
      fields.append(
        el(
          "fieldset",
          { id: "bands", "data-field": "bands", disabled: scope !== null, "aria-describedby": "bands-error" },
          el("legend", { text: "Bands" }),
          el("span", { class: "field-error", id: "bands-error" }),
          el(
            "div",
            { class: "cfg-grid" },
            el("p", {}, numberInput("bands.healthy_min", "Healthy from score (healthy_min)", bands.healthy_min)),
            el("p", {}, numberInput("bands.at_risk_below", "At risk below score (at_risk_below)", bands.at_risk_below)),
            el("p", {}, numberInput("bands.hysteresis", "Hysteresis, points (hysteresis)", bands.hysteresis)),
          ),
          el(
            "figure",
            { id: "band-scale", class: "band-scale" },
            svg("svg", { viewBox: "0 0 100 4", preserveAspectRatio: "none", "aria-hidden": "true", focusable: "false" }, BAND_SCALE.map((band) => svg("rect", { class: `bar-${band}`, y: 0, height: 4 }))),
            el("div", { class: "band-scale-ticks", "aria-hidden": "true" }, el("span", { text: "0" }), el("span", { text: "100" })),
            el("figcaption", { "aria-live": "polite" }),
          ),
        ),
      );
      drawBandScale();
      const sentiment = config.sentiment;
      const sentimentMode = selectInput(SENTIMENT_MODES, sentiment.mode);
      const sentimentSignal = selectInput(
        [
          ...Object.keys(config.signals).map((name) => [name, SIGNAL_LABELS[name] || name]),
          ...config.custom_signals.map((signal) => [signal.name, signal.label]),
        ],
        sentiment.signal,
      );
      const sentimentWeight = el("input", { type: "text", inputmode: "decimal", class: "num", value: String(sentiment.weight), autocomplete: "off" });
      const sentimentDays = el("input", { type: "text", inputmode: "numeric", class: "num", value: String(sentiment.default_days), autocomplete: "off" });
      const sentimentReasons = el("textarea", { rows: "5", spellcheck: "false" });
      sentimentReasons.value = sentiment.reasons.join("\n");
      const sentimentCrmField = el("input", { type: "checkbox" });
      sentimentCrmField.checked = Boolean(sentiment.crm_field);
      fields.append(
        el(
          "fieldset",
          { id: "sentiment-settings", disabled: scope !== null },
          el("legend", { text: "CSM sentiment" }),
          el(
            "div",
            { class: "cfg-grid" },
            field("sentiment.mode", "What a sentiment does (mode)", sentimentMode),
            field("sentiment.signal", "As an indicator of (signal)", sentimentSignal),
            field("sentiment.weight", "Its weight there (weight)", sentimentWeight),
            field("sentiment.default_days", "Holds for, days (default_days)", sentimentDays),
          ),
          field("sentiment.reasons", "Reasons a CSM picks from, one per line (reasons)", sentimentReasons),
          field("sentiment.crm_field", "CSMs set it on the CRM record too (crm_field)", sentimentCrmField, {
            hint: "Adds two picklists to the account record, CSM sentiment and its reason; a change there sets the sentiment for the days above, authored by the CRM user.",
          }),
        ),
      );
      const keyFeatures = el("textarea", { rows: "4", spellcheck: "false" });
      keyFeatures.value = config.product.key_features.join("\n");
      fields.append(
        el(
          "fieldset",
          { id: "product", disabled: scope !== null },
          el("legend", { text: "Product" }),
          field("product.key_features", "Key features, one per line (key_features)", keyFeatures, {
            hint: "The features (a usage event's feature, a Segment event or page name, any case) whose use marks real adoption: the key-feature adoption indicator is the share of active users who used one in 30 days. Empty: not measured.",
          }),
        ),
      );
      const signalsBox = el("div", { id: "signals-editor", "data-field": "signals", "data-label": "Signals", "aria-describedby": "signals-editor-error" });
      signalsBox.append(el("span", { class: "field-error", id: "signals-editor-error" }));
      for (const [signal, spec] of Object.entries(config.signals)) {
        const about = catalogue.signals[signal] || {};
        const label = about.label || SIGNAL_LABELS[signal] || signal;
        const groupId = `cfg-signals-${signal}`;
        const signalShareId = `${groupId}-share`;
        const row = (indicator, thresholds) => {
          const known = catalogue.indicators[`${signal}.${indicator}`] || {};
          const name = known.label || indicator;
          const unit = UNITS[known.unit] || null;
          const path = `signals.${signal}.indicators.${indicator}`;
          const rowId = `cfg-${path.replaceAll(".", "-")}`;
          const shareId = `${rowId}-share`;
          const crumb = `${label} › ${name} › `;
          const cell = (part, short, extra = []) =>
            el("td", { class: part }, numberInput(`${path}.${part}`, `${crumb}${short}`, thresholds[part], { short, unit: part === "weight" ? null : unit, describedBy: extra }));
          const weightCell = cell("weight", "Weight", [shareId]);
          weightCell.append(el("span", { class: "share hint", id: shareId }));
          return el(
            "tr",
            { "data-indicator": indicator, "data-field": path, "data-crumb": name, id: rowId, "aria-describedby": `${rowId}-error` },
            el(
              "th",
              { scope: "row" },
              el("span", { class: "ind-label", text: name }),
              known.optional ? el("span", { class: "tag", text: "optional" }) : null,
              el("span", { class: "ind-unit", text: unit ? unit.text : "" }),
              known.explanation ? el("span", { class: "ind-explanation", text: known.explanation }) : null,
              el("span", { class: "field-error", id: `${rowId}-error` }),
            ),
            cell("at_risk", "At risk at"),
            cell("healthy", "Healthy at"),
            weightCell,
          );
        };
        signalsBox.append(
          el(
            "fieldset",
            { "data-signal": signal, "data-field": `signals.${signal}`, id: groupId, disabled: scope !== null, "aria-describedby": `${groupId}-error` },
            el("legend", { text: label }),
            el("span", { class: "field-error", id: `${groupId}-error` }),
            about.description ? el("p", { class: "hint signal-about", text: `${about.description[0].toUpperCase()}${about.description.slice(1)}: ${about.question || ""}` }) : null,
            el(
              "p",
              { class: "signal-weight" },
              numberInput(`signals.${signal}.weight`, `${label} › Weight in the score`, spec.weight, { short: "Weight in the score", describedBy: [signalShareId] }),
              el("span", { class: "signal-share hint", id: signalShareId }),
            ),
            scrollBox(
              el(
                "table",
                { class: "thresholds" },
                el("caption", { class: "visually-hidden", text: `${label}: indicators, their thresholds and weights` }),
                el(
                  "thead",
                  {},
                  el("tr", {}, ["Indicator", "At risk at (scores 0)", "Healthy at (scores 100)", "Weight in the signal"].map((text) => el("th", { scope: "col", text }))),
                ),
                el(
                  "tbody",
                  {},
                  Object.entries(spec.indicators).map(([indicator, thresholds]) => row(indicator, thresholds)),
                ),
              ),
            ),
            el("p", { class: "hint share-note" }),
          ),
        );
      }
      fields.append(signalsBox);
      updateShares();
    }

    function candidate() {
      const config = structuredClone(base);
      const problems = [];
      for (const input of fields.querySelectorAll("input[data-path]")) {
        // Untouched, a value goes back exactly as it came (no round trip through a percentage).
        if (input.value === input.defaultValue) continue;
        const value = numberValue(input, problems);
        if (!Number.isFinite(value)) continue;
        const parts = input.dataset.path.split(".");
        let node = config;
        for (const part of parts.slice(0, -1)) node = node[part];
        node[parts[parts.length - 1]] = storedNumber(value, Number(input.dataset.scale || 1));
      }
      const reading = (path) => fields.querySelector(`[data-field="${path}"]`);
      config.sentiment = {
        mode: reading("sentiment.mode").value,
        signal: reading("sentiment.signal").value,
        weight: numberValue(reading("sentiment.weight"), problems),
        default_days: numberValue(reading("sentiment.default_days"), problems, { integer: true }),
        reasons: reading("sentiment.reasons").value.split("\n").map((line) => line.trim()).filter((line) => line !== ""),
        crm_field: reading("sentiment.crm_field").checked,
      };
      const keyFeatures = fields.querySelector('[data-field="product.key_features"]');
      config.product.key_features = keyFeatures.value
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line !== "");
      // A key bound to a connection sends the global part as it read it: it may not change it.
      if (editors.everyone) {
        config.alerts = editors.rules.read(problems);
        config.segments = editors.segments.read(problems);
        config.custom_signals = editors.customSignals.read(problems);
        config.custom_indicators = editors.customIndicators.read(problems);
      }
      const mine = { segments: editors.ownSegments.read(problems), alerts: editors.routing.read() };
      clearFieldErrors(form);
      if (problems.length) {
        showProblems("Fix the marked fields:", showFieldErrors(form, problems));
        return null;
      }
      // Left empty, a connection without settings keeps having none (no change to store).
      const empty = JSON.stringify(mine) === JSON.stringify(NO_CONNECTION_SETTINGS);
      if (own in config.connections || !empty) config.connections = { ...config.connections, [own]: mine };
      return config;
    }

    /** A refusal that names fields (422, or 403 for a field the key may not change). */
    function showValidation(err) {
      clearFieldErrors(form);
      const named = showFieldErrors(form, fieldProblems(err));
      showProblems(err.status === 403 ? "Not allowed:" : "The configuration is not valid:", named.length ? named : [err.message]);
    }

    function renderVersionLine() {
      const doc = documentInForce;
      $("#config-version").textContent =
        doc.version_id === null
          ? `In force: the defaults (${doc.version}).`
          : doc.author === null
            ? `In force: version ${doc.version_id} (${doc.version}), a change to another connection's settings, on ${fmtTime(doc.created_at)}.`
            : `In force: version ${doc.version_id} (${doc.version}), by ${doc.author} on ${fmtTime(doc.created_at)}${doc.comment ? `: “${doc.comment}”` : ""}.`;
    }

    async function loadConfig() {
      const [{ data, response }] = await Promise.all([api("GET", "/api/v1/config"), loadCatalogue()]);
      clearPreview();
      documentInForce = data;
      base = data.config;
      etag = response.headers.get("ETag");
      renderFields(data.config, await channelsOffered);
      renderVersionLine();
      $("#draft-note").hidden = true;
    }

    /** The suggestion's thresholds and weights as the working draft, previewed at once; the
     * version the form was loaded from stays the one Apply checks (If-Match). */
    async function takeSuggestion(handed) {
      base = withThresholdsAndWeights(documentInForce.config, handed.config);
      renderFields(base, await channelsOffered);
      const changedSince = documentInForce.created_at && new Date(documentInForce.created_at) > new Date(handed.computed_at);
      const note = clear($("#draft-note"));
      append(note, [
        `Draft from the calibration page: the thresholds and weights suggested by job ${handed.job} (${handed.cases} outcomes, each scored ${handed.horizon} days before) are in the form below, not applied. `,
        el("a", { href: "#preview-result", text: "The preview" }),
        " below shows what they would change; Apply stores them with your comment, Reload discards them.",
        changedSince
          ? ` The configuration in force changed after the suggestion was computed (${fmtTime(handed.computed_at)}): it was fitted to the one before; run it again to be sure.`
          : null,
      ]);
      note.hidden = false;
      $("#config-comment").value = `Calibration: thresholds and weights suggested from ${handed.cases} outcomes, ${handed.horizon} days before each (job ${handed.job})`;
      await preview();
    }

    async function loadVersions() {
      const { data } = await api("GET", "/api/v1/config/versions?limit=50");
      const body = clearRows("#versions-table tbody", data.items, {
        columns: 6,
        empty: "No version stored yet: the defaults are in force.",
      });
      for (const version of data.items) {
        body.append(
          el(
            "tr",
            { "data-version": version.id },
            el("th", { scope: "row" }, `${version.id} `, el("span", { class: "muted", text: version.version })),
            el("td", { text: fmtTime(version.created_at) }),
            el("td", { class: version.author === null ? "muted" : null, text: version.author === null ? "another connection" : version.author }),
            el("td", { class: "comment", text: version.comment === null ? "" : version.comment }),
            el("td", { text: version.current ? "In force" : "" }),
            el(
              "td",
              {},
              version.current
                ? null
                : el("button", {
                    type: "button",
                    class: "rollback",
                    text: "Roll back",
                    "aria-label":
                      scope === null ? `Roll back to version ${version.id}` : `Roll back connection ${scope}'s settings to version ${version.id}`,
                    title: admin ? null : "Needs an admin key",
                    disabled: !admin,
                    onclick: () => rollback(version.id),
                  }),
            ),
          ),
        );
      }
    }

    function conflict() {
      showError("Someone else changed the configuration — reload to see their version, then make your change again.");
      $("#reload").focus();
    }

    async function stored(data, response, message) {
      clearPreview();
      documentInForce = data;
      base = data.config;
      $("#draft-note").hidden = true;
      etag = response.headers.get("ETag");
      await loadCatalogue();
      renderFields(data.config, await channelsOffered);
      renderVersionLine();
      $("#config-comment").value = "";
      await loadVersions();
      showStatus(message);
    }

    /** Per rule of the candidate: how many new alerts, on how many accounts, and the first
     * of those accounts by name (CRM text: shown as text, linked by its encoded id). */
    function ruleTotalsTable(rules) {
      return el(
        "table",
        { id: "preview-rules" },
        el("caption", { text: "New alerts per rule" }),
        el(
          "thead",
          {},
          el("tr", {}, ["Rule", "New alerts", "Accounts", "For whom"].map((text, i) => el("th", { scope: "col", class: i === 1 || i === 2 ? "num" : null, text }))),
        ),
        el(
          "tbody",
          {},
          rules.map((rule) => {
            const more = rule.accounts_total - rule.accounts.length;
            return el(
              "tr",
              { "data-rule": rule.rule },
              el("th", { scope: "row" }, rule.rule, rule.enabled ? null : el("span", { class: "hint", text: "disabled" })),
              el("td", { class: "num total", text: String(rule.total) }),
              el("td", { class: "num", text: String(rule.accounts_total) }),
              el(
                "td",
                { class: "who" },
                rule.accounts.length
                  ? rule.accounts.flatMap((account, index) => [
                      index ? ", " : null,
                      el("a", { href: `/admin/accounts/${encodeURIComponent(account.id)}`, text: account.name || account.id }),
                    ])
                  : el("span", { class: "muted", text: "nobody" }),
                more > 0 ? ` and ${more} more` : null,
              ),
            );
          }),
        ),
      );
    }

    /** A table in a box that scrolls sideways on a narrow screen, and can then be scrolled
     * from the keyboard (a named region in the tab order). */
    function scrollRegion(label, table) {
      return el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label }, table);
    }

    async function preview() {
      showError("");
      showStatus("");
      const config = candidate();
      clearPreview();
      if (!config) return;
      const mine = previewSeq;
      const section = $("#preview-result");
      const target = clear($("#preview-body"));
      section.hidden = false;
      target.append(el("p", { class: "muted", text: "Computing the preview on today's facts…" }));
      let data;
      try {
        data = (await api("POST", "/api/v1/config/preview", { body: { config, limit: 100, rule_accounts: RULE_ACCOUNTS } })).data;
      } catch (err) {
        if (mine !== previewSeq) return;
        clearPreview();
        if (err instanceof ApiError && err.status === 422) showValidation(err);
        else failed(err);
        return;
      }
      // Applied, reloaded or asked again meanwhile: this answer describes nothing on screen.
      if (mine !== previewSeq) return;
      const before = documentInForce.config.bands;
      const edgesCell = (band) => {
        const now = bandEdges(before, band);
        const then = bandEdges(config.bands, band);
        if (now === null) return null;
        return el("span", { class: "hint", text: now === then ? `score ${now}` : `score ${now} now; ${then} in this draft` });
      };
      clear(target).append(
        el(
          "p",
          {},
          `${data.accounts} accounts scored twice, under the configuration in force and under this one. `,
          data.diff_paths.length ? "Changed fields: " : "No field changed.",
          data.diff_paths.length ? el("span", { class: "diff-paths", text: data.diff_paths.join(", ") }) : null,
        ),
        scrollRegion(
          "Accounts per band",
          el(
            "table",
            { id: "preview-bands" },
            el("caption", { text: "Accounts per band" }),
            el(
              "thead",
              {},
              el("tr", {}, ["Band", "Before", "After", "Change"].map((text, i) => el("th", { scope: "col", class: i ? "num" : null, text }))),
            ),
            el(
              "tbody",
              {},
              BANDS.map((band) => {
                const before = data.bands.before[band];
                const after = data.bands.after[band];
                const change = after - before;
                return el(
                  "tr",
                  { "data-band": band },
                  el("th", { scope: "row" }, bandBadge(band), edgesCell(band)),
                  el("td", { class: "num before", text: String(before) }),
                  el("td", { class: "num after", text: String(after) }),
                  el("td", { class: "num", text: change > 0 ? `+${change}` : String(change) }),
                );
              }),
            ),
          ),
        ),
        scrollRegion("New alerts per rule", ruleTotalsTable(data.alerts.rules)),
        el("h3", { text: `Accounts that would change band: ${data.changed.total}` }),
        data.changed.items.length
          ? scrollRegion(
              "Accounts that would change band",
              el(
                "table",
                { id: "preview-changed" },
                el("caption", { class: "visually-hidden", text: "Accounts that would change band" }),
                el(
                  "thead",
                  {},
                  el("tr", {}, ["Account", "Score now", "Band now", "Score after", "Band after"].map((text) => el("th", { scope: "col", text }))),
                ),
                el(
                  "tbody",
                  {},
                  data.changed.items.map((item) =>
                    el(
                      "tr",
                      { "data-account": item.id },
                      el("th", { scope: "row" }, el("a", { href: `/admin/accounts/${encodeURIComponent(item.id)}`, text: item.name || item.id })),
                      el("td", { class: "num", text: fmtScore(item.old_score) }),
                      el("td", {}, bandBadge(item.old_band)),
                      el("td", { class: "num", text: fmtScore(item.new_score) }),
                      el("td", {}, bandBadge(item.new_band)),
                    ),
                  ),
                ),
              ),
            )
          : el("p", { class: "muted", text: "No account would change band." }),
        el("h3", { text: `Alerts that would fire: ${data.alerts.total}` }),
        data.alerts.items.length
          ? scrollRegion(
              "Alerts that would fire",
              el(
                "table",
                { id: "preview-alerts" },
                el("caption", { class: "visually-hidden", text: "Alerts that would fire" }),
                el("thead", {}, el("tr", {}, ["Account", "Rule", "Alert"].map((text) => el("th", { scope: "col", text })))),
                el(
                  "tbody",
                  {},
                  data.alerts.items.map((alert) =>
                    el(
                      "tr",
                      {},
                      el("th", { scope: "row", text: alert.account.name || alert.account.id }),
                      el("td", { text: alert.rule }),
                      el("td", {}, alert.title, el("span", { class: "hint", text: alert.reason })),
                    ),
                  ),
                ),
              ),
            )
          : el("p", { class: "muted", text: "No new alert would fire." }),
      );
      editors.rules.showPreview(data.alerts.rules);
      showStatus("Preview ready: nothing was changed.");
    }

    /** Asks before a change that rescores accounts; resolves true when the admin confirms. */
    function confirmStep(title, text, action) {
      const dialog = $("#confirm-dialog");
      $("#confirm-title").textContent = title;
      $("#confirm-text").textContent = text;
      $("#confirm-ok").textContent = action;
      dialog.returnValue = "";
      dialog.showModal();
      $("#confirm-cancel").focus();
      return new Promise((resolve) => {
        dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      });
    }

    function inForce(data) {
      return data.version_id === null ? "the defaults" : `version ${data.version_id}`;
    }

    const RESCORE =
      "Every account is rescored under it: bands follow at once and alerts fire for the accounts that enter a band a rule watches (a score drop caused by the change itself never fires). History is kept; you can roll back.";

    async function apply(event) {
      event.preventDefault();
      showError("");
      showStatus("");
      if (!admin) return;
      const config = candidate();
      if (!config) return;
      const what = scope === null ? "this configuration" : `connection ${scope}'s settings as edited`;
      if (!(await confirmStep("Apply the configuration?", `A new version with ${what} will be stored, unless nothing changed. ${RESCORE}`, "Store and rescore"))) {
        showStatus("Not applied: nothing was changed.");
        return;
      }
      applyButton.disabled = true;
      try {
        const { data, response } = await api("PUT", "/api/v1/config", {
          body: { config, comment: $("#config-comment").value.trim() },
          headers: { "If-Match": etag },
        });
        await stored(
          data,
          response,
          data.stored === false
            ? `Nothing to apply: this is the configuration in force (${inForce(data)}); nothing was stored and no account is rescored.`
            : `Applied: version ${data.version_id} is in force; accounts are being rescored.`,
        );
      } catch (err) {
        if (err instanceof ApiError && err.status === 412) conflict();
        else if (err instanceof ApiError && (err.status === 422 || err.status === 403)) showValidation(err);
        else failed(err);
      } finally {
        applyButton.disabled = false;
      }
    }

    /** Rolls back to version `versionId`, or to the built-in defaults when it is null. */
    async function rollback(versionId) {
      showError("");
      showStatus("");
      const target = versionId === null ? "the defaults" : `version ${versionId}`;
      const what = scope === null ? `the configuration of ${target}` : `connection ${scope}'s settings as in ${target}`;
      if (!(await confirmStep(`Roll back to ${target}?`, `A new version with ${what} will be stored, unless it is what is in force. ${RESCORE}`, "Roll back and rescore"))) {
        showStatus("Not rolled back: nothing was changed.");
        return;
      }
      try {
        const comment = $("#config-comment").value.trim();
        const path = versionId === null ? "defaults" : String(versionId);
        const { data, response } = await api("POST", `/api/v1/config/versions/${path}/rollback`, {
          body: comment ? { comment } : {},
          headers: { "If-Match": etag },
        });
        await stored(
          data,
          response,
          data.stored === false
            ? `Nothing to roll back: ${target} is what is in force (${inForce(data)}); nothing was stored and no account is rescored.`
            : `Rolled back: version ${data.version_id} (equal to ${target}) is in force; accounts are being rescored.`,
        );
      } catch (err) {
        if (err instanceof ApiError && err.status === 412) conflict();
        else failed(err);
      }
    }

    const toDefaults = $("#rollback-defaults");
    toDefaults.setAttribute("aria-label", scope === null ? "Roll back to the defaults" : `Roll back connection ${scope}'s settings to the defaults`);
    toDefaults.disabled = !admin;
    if (!admin) toDefaults.title = "Needs an admin key";
    toDefaults.addEventListener("click", () => rollback(null));
    $("#config-form").addEventListener("submit", apply);
    $("#preview").addEventListener("click", preview);
    $("#reload").addEventListener("click", () => {
      showError("");
      showStatus("");
      Promise.all([loadConfig(), loadVersions()])
        .then(() => showStatus("Reloaded the configuration in force."))
        .catch(failed);
    });
    Promise.all([loadConfig(), loadVersions()])
      .then(() => (suggestion ? takeSuggestion(suggestion) : null))
      .catch(failed);
  }

  // Calibration -------------------------------------------------------------------------------

  // The last job of each kind, by its address ({backtest: "/api/v1/config/jobs/7", ...}), kept
  // for this tab: a reload shows its progress or result again. A job of another connection (a
  // key signed in since) answers 404 and is forgotten.
  const JOBS_KEY = "crm-health.calibration.jobs";
  // A suggestion on its way to the configuration page, which takes it once. Not in the address:
  // it is a whole configuration, and addresses end up in logs and the browser's history.
  const SUGGESTION_KEY = "crm-health.calibration.suggestion";
  // A job's progress is stored at most once a second: fetching it more often shows nothing new.
  const POLL_MS = 1000;
  const JOB_PATH = /^\/api\/v1\/config\/jobs\/\d+$/;

  /** This tab's sessionStorage as JSON. A browser that refuses storage keeps nothing: `set`
   * says so, `get` finds nothing. */
  const tabStore = {
    get(key) {
      try {
        return JSON.parse(sessionStorage.getItem(key) || "null");
      } catch {
        return null;
      }
    },
    set(key, value) {
      try {
        sessionStorage.setItem(key, JSON.stringify(value));
        return true;
      } catch {
        return false;
      }
    },
    take(key) {
      const value = tabStore.get(key);
      try {
        sessionStorage.removeItem(key);
      } catch {
        // Nothing was kept either.
      }
      return value;
    },
  };

  /** `config` with the thresholds and weights of `candidate` (a suggestion), matched by name;
   * everything else (rules, segment overrides, connections' settings) stays as in `config`,
   * whatever else the candidate carries. */
  function withThresholdsAndWeights(config, candidate) {
    const draft = structuredClone(config);
    const PARTS = ["at_risk", "healthy", "weight"];
    for (const [name, signal] of Object.entries(draft.signals)) {
      const suggested = (candidate.signals || {})[name];
      if (!suggested) continue;
      signal.weight = suggested.weight;
      for (const [indicator, values] of Object.entries(signal.indicators)) {
        const found = (suggested.indicators || {})[indicator];
        if (found) for (const part of PARTS) values[part] = found[part];
      }
    }
    const key = (item) => `${item.signal || ""}.${item.name}`;
    const signals = new Map((candidate.custom_signals || []).map((item) => [item.name, item]));
    for (const signal of draft.custom_signals) if (signals.has(signal.name)) signal.weight = signals.get(signal.name).weight;
    const indicators = new Map((candidate.custom_indicators || []).map((item) => [key(item), item]));
    for (const indicator of draft.custom_indicators) {
      const found = indicators.get(key(indicator));
      if (found) for (const part of PARTS) indicator[part] = found[part];
    }
    return draft;
  }

  function fmtAuc(value) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(2);
  }

  function fmtShare(value) {
    return value === null || value === undefined ? "—" : `${Math.round(value * 100)}%`;
  }

  /** The AUC in words: what the number means, not only the number. */
  function aucWords(auc) {
    if (auc === null || auc === undefined) return "No AUC: it needs churned and renewed cases with a score.";
    return `${fmtAuc(auc)}: a renewed account scored above a churned one ${Math.round(auc * 100)}% of the time; 0.5 is chance.`;
  }

  function intervalText(interval) {
    return interval ? `${fmtAuc(interval.low)} to ${fmtAuc(interval.high)}` : "—";
  }

  /** The ROC curve of one horizon, with the diagonal of chance. */
  function rocChart(horizon) {
    const size = 320;
    const left = 58;
    const right = 12;
    const top = 12;
    const bottom = 44;
    const plot = size - left - right;
    const x = (fpr) => left + fpr * plot;
    const y = (tpr) => top + (1 - tpr) * plot;
    const points = horizon.roc;
    // The threshold that best tells the outcomes apart (Youden's J), said in words.
    const best = points.reduce((found, point) => (point.threshold !== null && (!found || point.tpr - point.fpr > found.tpr - found.fpr) ? point : found), null);
    const title = `ROC curve of the score, ${horizon.days} days before the outcome`;
    const description =
      `AUC ${fmtAuc(horizon.auc)}. The further the curve bows above the diagonal (chance), the better the score tells churn from renewal.` +
      (best
        ? ` Reading a score of ${fmtScore(best.threshold)} or below as churn (the dot) catches ${fmtShare(best.tpr)} of the churned accounts and flags ${fmtShare(best.fpr)} of the renewed ones.`
        : "");
    const id = nextId("roc");
    const ticks = [0, 0.25, 0.5, 0.75, 1];
    return el(
      "figure",
      { class: "chart" },
      svg(
        "svg",
        // Named by its <title>, described by the caption below: the curve in words.
        { id: "roc-chart", class: "calibration-chart roc", viewBox: `0 0 ${size} ${size}`, role: "img", "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-desc` },
        svg("title", { id: `${id}-title`, text: title }),
        ticks.map((tick) => [
          svg("line", { class: tick === 0 ? "axis" : "grid", x1: left, x2: left + plot, y1: y(tick), y2: y(tick) }),
          svg("line", { class: tick === 0 ? "axis" : "grid", x1: x(tick), x2: x(tick), y1: top, y2: top + plot }),
          svg("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end", text: String(tick) }),
          svg("text", { x: x(tick), y: top + plot + 16, "text-anchor": "middle", text: String(tick) }),
        ]),
        svg("line", { class: "chance", x1: x(0), y1: y(0), x2: x(1), y2: y(1) }),
        // Below the diagonal near its start, where a curve better than chance seldom runs.
        svg("text", { class: "chance-label", x: x(0.3), y: y(0.22), "text-anchor": "middle", transform: `rotate(-45 ${x(0.3)} ${y(0.22)})`, text: "chance" }),
        points.length ? svg("path", { class: "roc-line", d: points.map((point, i) => `${i ? "L" : "M"}${x(point.fpr).toFixed(1)},${y(point.tpr).toFixed(1)}`).join("") }) : null,
        best ? svg("circle", { class: "dot", cx: x(best.fpr).toFixed(1), cy: y(best.tpr).toFixed(1), r: 4 }) : null,
        svg("text", { x: left + plot / 2, y: size - 6, "text-anchor": "middle", text: "Renewed flagged (false positive rate)" }),
        svg("text", { x: 14, y: top + plot / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${top + plot / 2})`, text: "Churned caught (true positive rate)" }),
      ),
      el("figcaption", { id: `${id}-desc` }, el("strong", { text: "ROC curve. " }), description),
    );
  }

  /** Whether an indicator's data run against its thresholds: higher values went with renewals
   * where the thresholds call lower healthier, or the other way round. */
  function reversed(indicator) {
    return indicator.direction !== null && indicator.direction !== indicator.configured;
  }

  const DIRECTION_TEXT = { higher: "higher is healthier", lower: "lower is healthier" };

  /** Each indicator's AUC as a bar from chance (0.5, the centre): to the right where higher
   * values went with renewals, to the left where lower ones did. The labels and values are
   * text, so they stay readable at any width; only the bars are drawn (SVG stretched to the
   * row). */
  function powerChart(indicators, days, config) {
    const measured = indicators.filter((indicator) => indicator.auc !== null);
    const none = indicators.length - measured.length;
    const flipped = measured.filter(reversed);
    const title = `Power of each indicator, ${days} days before the outcome`;
    const titleId = nextId("power");
    const bar = (auc, turned) =>
      svg(
        "svg",
        { class: "power-bar", viewBox: "0 0 100 10", preserveAspectRatio: "none", "aria-hidden": "true", focusable: "false" },
        [25, 75].map((tick) => svg("line", { class: "grid", x1: tick, x2: tick, y1: 0, y2: 10, "vector-effect": "non-scaling-stroke" })),
        svg("rect", { class: turned ? "bar bar-reversed" : "bar", x: (Math.min(auc, 0.5) * 100).toFixed(2), y: 1, width: Math.max(0.4, Math.abs(auc - 0.5) * 100).toFixed(2), height: 8 }),
        svg("line", { class: "axis", x1: 50, x2: 50, y1: 0, y2: 10, "vector-effect": "non-scaling-stroke" }),
      );
    const items = measured.map((indicator) => {
      const turned = reversed(indicator);
      return el(
        "li",
        { class: turned ? "indicator reversed" : "indicator", "data-indicator": indicator.key },
        el("span", { class: "power-label" }, indicatorLabel(indicator.signal, indicator.name, config), turned ? el("strong", { class: "reversed-mark", text: " — reversed" }) : null),
        el("span", { class: "power-value", text: `AUC ${fmtAuc(indicator.auc)}` }),
        bar(indicator.auc, turned),
        el("span", {
          class: "visually-hidden",
          text: `Power ${fmtAuc(indicator.power)}: the data say ${DIRECTION_TEXT[indicator.direction] || "nothing"}, the thresholds assume ${DIRECTION_TEXT[indicator.configured]}.`,
        }),
      );
    });
    return el(
      "figure",
      { class: "chart", "aria-labelledby": titleId },
      el("p", { class: "chart-title", id: titleId, text: title }),
      measured.length
        ? [
            el("p", { class: "power-scale", "aria-hidden": "true" }, el("span", { text: "← lower is healthier" }), el("span", { text: "0.5: chance" }), el("span", { text: "higher is healthier →" })),
            el("ul", { id: "power-chart", class: "power-list" }, items),
          ]
        : el("p", { class: "muted", text: "No indicator had data for both outcomes." }),
      el(
        "figcaption",
        {},
        "The AUC of each indicator's raw value: the further from 0.5 (the centre line), the more it tells. ",
        flipped.length ? [el("strong", { class: "reversed-mark", text: "Reversed" }), ": the data run against the thresholds (their healthy end is where churn was); check them. "] : null,
        none ? `${none} ${none === 1 ? "indicator" : "indicators"} without data for both outcomes (in the table).` : null,
      ),
      el(
        "details",
        {},
        el("summary", { text: "The indicators as a table" }),
        scrollBox(
          dataTable(
            { id: "power-table" },
            title,
            ["Indicator", ["AUC", "num"], ["Power", "num"], "The data say", "The thresholds assume", ["Coverage", "num"]],
            indicators.map((indicator) =>
              el(
                "tr",
                { "data-indicator": indicator.key },
                el("th", { scope: "row" }, indicatorLabel(indicator.signal, indicator.name, config), reversed(indicator) ? el("span", { class: "hint reversed-mark", text: "reversed" }) : null),
                el("td", { class: "num", text: fmtAuc(indicator.auc) }),
                el("td", { class: "num", text: fmtAuc(indicator.power) }),
                el("td", { text: DIRECTION_TEXT[indicator.direction] || "—" }),
                el("td", { text: DIRECTION_TEXT[indicator.configured] }),
                el("td", { class: "num", text: fmtShare(indicator.coverage) }),
              ),
            ),
          ),
        ),
      ),
    );
  }

  /** The band x outcome table of one horizon, and the at-risk band's hits and false alarms. */
  function bandsTable(horizon) {
    const flagged = horizon.flagged_churned + horizon.flagged_renewed;
    return [
      el("h4", { text: "Churn by band" }),
      scrollBox(
        dataTable(
          { id: "bands-table", class: "compact" },
          `Outcomes by band, ${horizon.days} days before: the confusion table`,
          ["Band", ["Cases", "num"], ["Churned", "num"], ["Renewed", "num"], ["Churn rate", "num"], ["Share of churn", "num"], ["Lift", "num"]],
          horizon.bands.map((band) =>
            el(
              "tr",
              { "data-band": band.band },
              el("th", { scope: "row" }, bandBadge(band.band)),
              el("td", { class: "num", text: String(band.cases) }),
              el("td", { class: "num", text: String(band.churned) }),
              el("td", { class: "num", text: String(band.renewed) }),
              el("td", { class: "num", text: fmtShare(band.churn_rate) }),
              el("td", { class: "num", text: fmtShare(band.recall) }),
              el("td", { class: "num", text: band.lift === null ? "—" : `${band.lift.toFixed(1)}×` }),
            ),
          ),
        ),
      ),
      el(
        "p",
        { class: "hint" },
        "Churn rate: of the cases in the band, the share that churned. Share of churn: of all churned cases, the share in the band. Lift: the band's churn rate over the overall one (above 1, the band warns). ",
        flagged
          ? `The at-risk band flagged ${flagged}: ${horizon.flagged_churned} of the ${horizon.churned} churned (recall ${fmtShare(horizon.recall)}) and ${horizon.flagged_renewed} that renewed (precision ${fmtShare(horizon.precision)}).`
          : "The at-risk band flagged none of them.",
      ),
    ];
  }

  function signalsTable(horizon, config) {
    return [
      el("h4", { text: "Signals" }),
      scrollBox(
        dataTable(
          { id: "signals-table", class: "compact" },
          `Each signal's AUC, ${horizon.days} days before`,
          ["Signal", ["Weight", "num"], ["Cases with a score", "num"], ["AUC", "num"]],
          horizon.signals.map((signal) =>
            el(
              "tr",
              { "data-signal": signal.name },
              el("th", { scope: "row", text: signalLabel(signal.name, config) }),
              el("td", { class: "num", text: fmtNumber(signal.weight) }),
              el("td", { class: "num", text: `${signal.cases} (${fmtShare(signal.coverage)})` }),
              el("td", { class: "num", text: fmtAuc(signal.auc) }),
            ),
          ),
        ),
      ),
    ];
  }

  function unscoredText(horizon) {
    if (!horizon.unscored) return "Every case had a score.";
    const why = Object.entries(horizon.why || {})
      .filter(([, count]) => count)
      .map(([reason, count]) => `${reason} ${count}`);
    const before = horizon.before_record ? `${horizon.before_record} came before their account's first record` : null;
    return `${horizon.unscored} cases had no score then (${[...why, before].filter(Boolean).join("; ")}); they count as neither flagged nor in the AUC.`;
  }

  /** One horizon in detail: the AUC in words, the ROC curve, the indicators, bands, signals. */
  function horizonDetail(horizon, config) {
    return el(
      "div",
      { "data-horizon": horizon.days },
      el("h3", { text: `${horizon.days} days before the outcome` }),
      el(
        "p",
        { class: "auc-words" },
        el("strong", { text: "AUC " }),
        aucWords(horizon.auc),
        horizon.auc_interval ? ` 95% interval ${intervalText(horizon.auc_interval)}.` : "",
      ),
      el("div", { class: "charts" }, rocChart(horizon), powerChart(horizon.indicators, horizon.days, config)),
      bandsTable(horizon),
      signalsTable(horizon, config),
      el("p", { class: "hint", text: unscoredText(horizon) }),
    );
  }

  function renderBacktest(target, job, config) {
    const result = job.result;
    const horizons = result.horizons;
    const detail = el("div", { id: "horizon-detail" });
    const chooser = el("select", {}, horizons.map((horizon) => el("option", { value: String(horizon.days), text: `${horizon.days} days` })));
    // The longest first: the earliest warning, and the suggestion's default horizon.
    chooser.value = String(horizons[horizons.length - 1].days);
    const method = el("p", {});
    const show = () => {
      const horizon = horizons.find((found) => String(found.days) === chooser.value);
      clear(detail).append(horizonDetail(horizon, config));
      method.textContent = `${result.method} ${horizon.method || ""}`;
    };
    chooser.addEventListener("change", show);
    clear(target).append(
      el("p", { text: `${result.outcomes} outcomes of ${result.accounts} accounts, scored under the configuration in force then (${result.config_version}); computed ${fmtTime(result.computed_at)}.` }),
      scrollBox(
        dataTable(
          { id: "auc-table", class: "compact" },
          "How well the score ranked churn below renewals, per horizon",
          ["Horizon", ["AUC", "num"], ["95% interval", "num"], ["Churned", "num"], ["Renewed", "num"], ["Scored", "num"]],
          horizons.map((horizon) =>
            el(
              "tr",
              { "data-horizon": horizon.days },
              el("th", { scope: "row", text: `${horizon.days} days` }),
              el("td", { class: "num auc", text: fmtAuc(horizon.auc) }),
              el("td", { class: "num", text: intervalText(horizon.auc_interval) }),
              el("td", { class: "num", text: String(horizon.churned) }),
              el("td", { class: "num", text: String(horizon.renewed) }),
              el("td", { class: "num", text: String(horizon.scored) }),
            ),
          ),
        ),
      ),
      el(
        "p",
        { class: "hint" },
        "Horizon: how many days before each outcome it was scored. AUC: the chance that a renewed account scored above a churned one (ties count half): 0.5 is chance, 1 a perfect ranking. ",
        "Few outcomes give wide intervals: read them with the counts.",
      ),
      field("horizon", "Horizon shown below", chooser),
      detail,
      el("details", {}, el("summary", { text: "How it was computed" }), method),
    );
    show();
  }

  /** A number of the suggestion beside the one in force; `changed` marks it (bold, and said). */
  function settingCells(current, suggested) {
    return ["at_risk", "healthy", "weight"].flatMap((part) => {
      const changed = current[part] !== suggested[part];
      return [
        el("td", { class: "num", text: fmtNumber(current[part]) }),
        el("td", { class: changed ? "num changed" : "num" }, fmtNumber(suggested[part]), changed ? el("span", { class: "visually-hidden", text: " (changed)" }) : null),
      ];
    });
  }

  function renderSuggestion(target, job, config) {
    const result = job.result;
    if (result.status === "refused") {
      clear(target).append(
        el(
          "div",
          { class: "note", id: "suggest-refusal" },
          el("p", {}, el("strong", { text: "No suggestion. " }), `${result.reason}.`),
          el("p", {
            text:
              `Cases ${result.horizon} days before their outcome: ${result.churned} churned and ${result.renewed} renewed${result.before_record ? `; ${result.before_record} more came before their account's first record` : ""}. ` +
              "Few outcomes fit noise, not your customers: record more (CRM deals and opportunities, outcome events, crm-health import outcomes), or lower the minimum above if a rougher fit will do.",
          }),
        ),
      );
      return;
    }
    const cv = result.cross_validation;
    const keep = Math.round(cv.blend * 100);
    const verdict = result.improves
      ? `The suggestion ranks better: AUC ${fmtAuc(cv.suggested_auc)} against ${fmtAuc(cv.current_auc)} now.`
      : `The suggestion ranks no better than the configuration in force (AUC ${fmtAuc(cv.suggested_auc)} against ${fmtAuc(cv.current_auc)}): keeping what you have is reasonable.`;
    const preview = el("button", { type: "button", id: "preview-suggestion", class: "primary", text: "Preview this suggestion" });
    preview.addEventListener("click", () => {
      showError("");
      const handed = { config: result.config, job: job.id, cases: result.cases, horizon: result.horizon, computed_at: result.computed_at };
      if (!tabStore.set(SUGGESTION_KEY, handed)) {
        showError("This browser keeps no session storage for the page, so the suggestion cannot be handed to the Configuration page: run crm-health suggest and apply its file instead.");
        return;
      }
      location.assign("/admin/config");
    });
    const indicatorRows = result.indicators.map((indicator) =>
      el(
        "tr",
        { "data-indicator": indicator.key, class: indicator.thresholds_changed || indicator.current.weight !== indicator.suggested.weight ? "changed-row" : null },
        el("th", { scope: "row" }, indicatorLabel(indicator.signal, indicator.name, config), reversed(indicator) ? el("span", { class: "hint reversed-mark", text: "reversed" }) : null),
        settingCells(indicator.current, indicator.suggested),
        el("td", { class: "num", text: fmtAuc(indicator.auc) }),
        el("td", { class: "note-text", text: indicator.note }),
      ),
    );
    const group = (text, span) => el("th", { scope: "colgroup", colspan: span, class: "group", text });
    const sub = (text) => el("th", { scope: "col", class: "num", text });
    // The helper, not the DOM's own append: it skips the notes when there are none.
    append(clear(target), [
      el("p", { class: "verdict" }, el("strong", { text: verdict })),
      scrollBox(
        dataTable(
          { id: "suggest-auc", class: "side-by-side" },
          "Cross-validated AUC of the configuration in force and of the suggestion, over the same cases",
          ["Over the same cases", ["In force", "num"], ["Suggested", "num"]],
          [
            el("tr", {}, el("th", { scope: "row", text: "AUC (cross-validated)" }), el("td", { class: "num current", text: fmtAuc(cv.current_auc) }), el("td", { class: "num suggested", text: fmtAuc(cv.suggested_auc) })),
            el("tr", {}, el("th", { scope: "row", text: "Cases scored" }), el("td", { class: "num", text: String(cv.current_scored) }), el("td", { class: "num", text: String(cv.suggested_scored) })),
          ],
        ),
      ),
      el("p", {
        class: "hint",
        text: `${result.churned} churned and ${result.renewed} renewed cases, each scored ${result.horizon} days before its outcome, dealt into ${cv.folds} folds by account. The weights keep ${keep}% of the ones in force (chosen by cross-validation). Only thresholds and weights differ.`,
      }),
      el("h3", { text: "Indicators" }),
      scrollBox(
        el(
          "table",
          { id: "suggest-indicators" },
          el("caption", { class: "visually-hidden", text: "Each indicator's thresholds and weight in force and suggested, its AUC and why it moved or not" }),
          el(
            "thead",
            {},
            el("tr", {}, el("th", { scope: "col", rowspan: 2, text: "Indicator" }), group("At risk at", 2), group("Healthy at", 2), group("Weight", 2), el("th", { scope: "col", rowspan: 2, class: "num", text: "AUC" }), el("th", { scope: "col", rowspan: 2, text: "Note" })),
            el("tr", {}, ["At risk", "Healthy", "Weight"].flatMap(() => [sub("In force"), sub("Suggested")])),
          ),
          el("tbody", {}, indicatorRows),
        ),
      ),
      el("h3", { text: "Signals" }),
      scrollBox(
        dataTable(
          { id: "suggest-signals", class: "compact" },
          "Each signal's weight in the composite, in force and suggested",
          ["Signal", ["Weight in force", "num"], ["Suggested", "num"], ["AUC", "num"]],
          result.signals.map((signal) =>
            el(
              "tr",
              { "data-signal": signal.name, class: signal.current.weight !== signal.suggested.weight ? "changed-row" : null },
              el("th", { scope: "row", text: signalLabel(signal.name, config) }),
              el("td", { class: "num", text: `${fmtNumber(signal.current.weight)} (${fmtShare(signal.current.share)})` }),
              el("td", { class: "num", text: `${fmtNumber(signal.suggested.weight)} (${fmtShare(signal.suggested.share)})` }),
              el("td", { class: "num", text: fmtAuc(signal.auc) }),
            ),
          ),
        ),
      ),
      result.notes.length ? [el("h3", { text: "Notes" }), el("ul", { id: "suggest-notes" }, result.notes.map((note) => el("li", { text: note })))] : null,
      el("details", {}, el("summary", { text: "How it was computed" }), el("p", { text: result.method })),
      el("p", { class: "actions" }, preview),
      el("p", {
        class: "hint",
        text: "Opens the Configuration page with these thresholds and weights as an unsaved draft and previews it there (band moves, new alerts). An admin applies it with a comment like any change; nothing is applied from here.",
      }),
    ]);
  }

  /** One kind of job: its form starts one, its box shows the progress while it runs (fetched
   * about once a second), then `render` shows the result. */
  function jobPanel({ kind, noun, path, form, button, target, request, restore, render }) {
    const box = $(`#${kind}-job`);
    const state = el("p", { class: "job-state", "aria-live": "polite" });
    const bar = el("progress", { "aria-label": `${noun}: cases read` });
    const count = el("span", { class: "muted" });
    const progress = el("div", { class: "job-progress", hidden: true }, bar, count);
    box.append(state, progress);
    // Fetches of a job that is no longer the one shown stop at their next turn.
    let shown = 0;

    const jobs = () => tabStore.get(JOBS_KEY) || {};
    const remember = (self) => tabStore.set(JOBS_KEY, { ...jobs(), [kind]: self });
    const forget = () => {
      const kept = jobs();
      delete kept[kind];
      tabStore.set(JOBS_KEY, kept);
    };

    function say(text, { error = false } = {}) {
      // Said only when it changes: the live region is not re-read every second.
      if (state.textContent !== text) state.textContent = text;
      state.classList.toggle("error-text", error);
    }

    function showJob(job) {
      const running = job.status === "queued" || job.status === "running";
      progress.hidden = !running;
      if (job.total) {
        bar.max = job.total;
        bar.value = job.done;
        count.textContent = `${job.done} of ${job.total} cases read`;
      } else {
        bar.removeAttribute("value");
        count.textContent = job.status === "queued" ? "waiting for its turn" : "counting the cases";
      }
      const by = `job ${job.id}, by ${job.author}`;
      if (job.status === "queued") say(`${noun} queued (${by}): another backtest or suggestion runs first.`);
      else if (job.status === "running") say(`${noun} running (${by}): reading each outcome's facts as they stood before it.`);
      // The job's own reason ("failed: RuntimeError: ...", "interrupted: ...; run it again").
      else if (job.status === "failed") say(`${noun} failed (${by}): ${(job.error || "no reason given").replace(/^failed: /, "")}`, { error: true });
      else say(`${noun} done (${by}, ${fmtTime(job.finished_at)}).`);
    }

    async function follow(self, { restoring = false } = {}) {
      shown += 1;
      const mine = shown;
      button.disabled = true;
      try {
        for (;;) {
          const { data: job } = await api("GET", self);
          if (mine !== shown) return;
          if (restoring) {
            restore(job.request);
            restoring = false;
          }
          showJob(job);
          if (job.status === "done") {
            await render(target, job);
            return;
          }
          if (job.status === "failed") return;
          await new Promise((resolve) => setTimeout(resolve, POLL_MS));
          if (mine !== shown) return;
        }
      } catch (err) {
        if (mine !== shown) return;
        if (err instanceof ApiError && err.status === 404) {
          forget();
          say("");
          progress.hidden = true;
          return;
        }
        if (err instanceof ApiError) say(`Could not fetch the ${noun.toLowerCase()}; reload the page to look again.`, { error: true });
        failed(err);
      } finally {
        if (mine === shown) button.disabled = false;
      }
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      showError("");
      clearFieldErrors(form);
      const problems = [];
      const body = request(problems);
      if (problems.length) {
        showFieldErrors(form, problems);
        showError(`Fix the marked fields: ${problems.map(({ path: at, message }) => `${at}: ${message}`).join("; ")}`);
        return;
      }
      // Whatever was being followed before stops being shown.
      shown += 1;
      button.disabled = true;
      clear(target);
      try {
        const { data: job } = await api("POST", path, { body });
        remember(job.links.self);
        showJob(job);
        follow(job.links.self);
      } catch (err) {
        button.disabled = false;
        if (err instanceof ApiError && err.status === 422) {
          showFieldErrors(form, fieldProblems(err));
          showError(`Not started: ${err.message}`);
        } else failed(err);
      }
    });

    const kept = jobs()[kind];
    if (typeof kept === "string" && JOB_PATH.test(kept)) follow(kept, { restoring: true });
  }

  function initCalibration() {
    // Custom indicators and signals are named by their labels, which the configuration holds.
    const configRead = api("GET", "/api/v1/config")
      .then(({ data }) => data.config)
      .catch(() => null);

    const [horizonsField, horizons] = textField("horizons", "Horizons, days before each outcome", "30, 60, 90", "1 to 365 days each, up to 12, separated by commas");
    $("#backtest-fields").append(horizonsField);
    jobPanel({
      kind: "backtest",
      noun: "Backtest",
      path: "/api/v1/config/backtest",
      form: $("#backtest-form"),
      button: $("#run-backtest"),
      target: $("#backtest-result"),
      request(problems) {
        const days = horizons.value.split(/[\s,;]+/).filter(Boolean).map(Number);
        if (!days.length || days.some((value) => !Number.isInteger(value))) problems.push({ path: "horizons", message: "whole numbers of days, separated by commas" });
        return { horizons: days };
      },
      restore(request) {
        if (request && Array.isArray(request.horizons)) horizons.value = request.horizons.join(", ");
      },
      render: async (target, job) => renderBacktest(target, job, await configRead),
    });

    const [horizonField, horizon] = numberField("horizon", "Horizon, days before each outcome", 90, "1 to 365");
    const [minimumField, minimum] = numberField("min_churned", "At least this many churned (and renewed) outcomes", 30, "fewer fit noise: the suggestion is refused");
    $("#suggest-fields").append(horizonField, minimumField);
    jobPanel({
      kind: "suggest",
      noun: "Suggestion",
      path: "/api/v1/config/suggest",
      form: $("#suggest-form"),
      button: $("#run-suggest"),
      target: $("#suggest-result"),
      request: (problems) => ({
        horizon: numberValue(horizon, problems, { integer: true }),
        min_churned: numberValue(minimum, problems, { integer: true }),
      }),
      restore(request) {
        if (!request) return;
        if (request.horizon) horizon.value = String(request.horizon);
        if (request.min_churned) minimum.value = String(request.min_churned);
      },
      render: async (target, job) => renderSuggestion(target, job, await configRead),
    });
  }

  // Sync ------------------------------------------------------------------------------------

  const SYNC_STATES = {
    ok: ["OK", "The CRM has every value, or gets it within minutes."],
    behind: ["Behind", "Values have waited over five minutes, with nothing failing: a backlog, a paused CRM allowance or a stopped worker."],
    failing: ["Failing", "The CRM does not take write-backs now; they are retried until it does."],
    needs_attention: ["Needs attention", "The CRM refused some records, or events could not be processed: someone needs to look."],
  };
  const SYNC_REFRESH_MS = 30000;

  /** A duration as the status command shows it: 45s, 12m 05s, 3h 02m, 2d 04h. */
  function fmtAge(seconds) {
    const whole = Math.floor(seconds);
    const pad = (n) => String(n).padStart(2, "0");
    if (whole < 60) return `${whole}s`;
    const minutes = Math.floor(whole / 60);
    if (minutes < 60) return `${minutes}m ${pad(whole % 60)}s`;
    const hours = Math.floor(minutes / 60);
    if (hours < 24) return `${hours}h ${pad(minutes % 60)}m`;
    return `${Math.floor(hours / 24)}d ${pad(hours % 24)}h`;
  }

  function syncCard(item) {
    const sync = item.writebacks;
    const [label, meaning] = SYNC_STATES[item.status] || [item.status, ""];
    const titleId = `sync-${item.connection.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const count = (value) => el("span", { class: value ? "sync-count nonzero" : "sync-count", text: String(value) });
    const facts = [
      ["Pending", count(sync.pending), sync.sending ? ` (${sync.sending} being sent)` : null],
      ["Failing (retried)", count(sync.failing)],
      ["Failed (refused by the CRM)", count(sync.failed)],
      ["Oldest pending", sync.oldest_pending_since ? `${fmtAge(sync.oldest_pending_age_seconds)}, since ${fmtTime(sync.oldest_pending_since)}` : "—"],
      ["Last success", sync.last_success_at ? fmtTime(sync.last_success_at) : "never"],
      ["Dead letters", count(item.dead_letters)],
      ["Unknown account ids (events waiting)", count(item.unknown_accounts || 0)],
      ["Not found in the CRM", count(item.not_found_in_crm || 0)],
    ];
    const errors = [];
    // CRM and event text is shown as text (textContent), never as markup.
    if (sync.failing_error) errors.push(["Last error of a failing write-back", sync.failing_error]);
    if (sync.failed_error) errors.push(["Why the CRM refused the last failed record", sync.failed_error]);
    return el(
      "section",
      { class: `card sync-card sync-${item.status}`, "data-connection": item.connection, "aria-labelledby": titleId },
      el("h2", { id: titleId }, `Connection ${item.connection} `, el("span", { class: `sync-state sync-state-${item.status}`, text: label })),
      el("p", { class: "hint", text: meaning }),
      el("dl", { class: "facts" }, facts.flatMap(([term, ...value]) => [el("dt", { text: term }), el("dd", {}, ...value)])),
      errors.map(([title, text]) => el("div", { class: "sync-error" }, el("h3", { text: title }), el("p", { class: "crm-text", text }))),
      item.commands.length
        ? el(
            "div",
            { class: "sync-commands" },
            el("h3", { text: "To retry, run on the server" }),
            el("ul", {}, item.commands.map((command) => el("li", {}, el("code", { text: command })))),
            el("p", { class: "hint", text: "Failing write-backs are retried on their own; --failing only sends them now instead of after their backoff. Fix what the CRM refused first (a deleted record, a value a field rejects): a failed write-back is not retried on its own." }),
          )
        : null,
    );
  }

  function initSync() {
    const target = $("#sync-connections");
    const refresh = $("#sync-refresh");

    async function load({ announce = false } = {}) {
      target.setAttribute("aria-busy", "true");
      try {
        const { data } = await api("GET", "/api/v1/sync");
        showError("");
        clear(target);
        if (!data.connections.length) target.append(el("p", { class: "muted", text: "No connection to show." }));
        for (const item of data.connections) target.append(syncCard(item));
        const counts = data.inbox.counts;
        $("#sync-inbox").textContent =
          `${counts.pending} pending, ${counts.processing} processing, ${counts.unmatched} waiting for their account (unmatched), ${counts.dead} dead letters; ` +
          `the oldest pending event waits ${fmtAge(data.inbox.oldest_pending_age_seconds)}.`;
        $("#sync-checked").textContent = `Checked ${fmtTime(data.checked_at)}; refreshed every ${SYNC_REFRESH_MS / 1000} s.`;
        if (announce) showStatus("Sync status refreshed.");
      } catch (err) {
        failed(err);
      } finally {
        target.setAttribute("aria-busy", "false");
      }
    }

    refresh.addEventListener("click", () => {
      showStatus("");
      load({ announce: true });
    });
    setInterval(() => {
      if (!document.hidden) load();
    }, SYNC_REFRESH_MS);
    load();
  }

  // --- start ---------------------------------------------------------------------------------

  // The portfolio home (accounts) and the account page add themselves from portfolio.js and
  // account.js.
  const PAGES = { config: initConfig, calibration: initCalibration, alerts: initAlerts, sync: initSync };

  async function start() {
    const page = document.body.dataset.page;
    if (page === "login") {
      initLogin();
      return;
    }
    try {
      session = (await api("GET", "/api/v1/session")).data;
    } catch (err) {
      failed(err);
      return;
    }
    $("#whoami").textContent = `${session.name} · ${session.role} · ${session.connection}`;
    $("#sign-out").addEventListener("click", async () => {
      try {
        await api("DELETE", "/api/v1/session");
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401)) {
          failed(err);
          return;
        }
      }
      location.assign("/admin/login");
    });
    const note = $("#role-note");
    if (!isAdmin()) {
      note.textContent =
        "You are signed in with a viewer key: you see everything, but applying or rolling back the configuration and acknowledging or snoozing alerts need an admin key.";
      note.hidden = false;
    } else if (settingsScope() !== null) {
      note.textContent = `You are signed in with an admin key of connection ${settingsScope()}: you manage its alerts and its own settings; what applies to every connection needs a global admin key.`;
      note.hidden = false;
    }
    const init = PAGES[page];
    if (init) init();
  }

  /** The colour a band is drawn in, from the page's CSS (one place for the palette). */
  function bandColour(band, { background = false } = {}) {
    const name = band === "at_risk" ? "at-risk" : band === "onboarding" ? "neutral" : band;
    const value = getComputedStyle(document.documentElement).getPropertyValue(`--${name}${background ? "-bg" : ""}`);
    return value.trim() || (background ? "#eaeef2" : "#57606a");
  }

  /** The band a score falls in under a configuration's bands ({at_risk_below, healthy_min}). */
  function bandOf(score, bands) {
    if (score === null || score === undefined) return "unknown";
    if (score >= bands.healthy_min) return "healthy";
    return score < bands.at_risk_below ? "at_risk" : "neutral";
  }

  // The page scripts loaded after this one (deferred, so in order, before DOMContentLoaded)
  // take these helpers from here and add their page to PAGES: one copy of each helper.
  window.crmHealth = {
    $, el, svg, setAttrs, append, clear, dataTable, scrollBox, clearRows, keepInAddress, showPage,
    stepPages, bandBadge, signalLabel, indicatorLabel, fmtScore, fmtNumber, fmtTime, trendCell,
    showError, showStatus, ApiError, api, query, shownBand, isAdmin, settingsScope, failed,
    dayValue, stepPath, sparkline, bandColour, bandOf, alertsTable, alertRow,
    BANDS, BAND_LABELS, SIGNAL_LABELS, DAY_MS,
    session: () => session,
    pages: PAGES,
  };
  document.addEventListener("DOMContentLoaded", start);
})();
