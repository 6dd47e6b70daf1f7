// crm-health admin: one account's page (/admin/accounts/<id>), the CSM's workspace. Loaded after
// admin.js (deferred, in order) and before DOMContentLoaded: takes its helpers from
// window.crmHealth and adds its page there. Every text from the CRM, the product or a person
// goes in as text (textContent), never as markup.
"use strict";

(() => {
  const {
    $, el, svg, api, query, clear, dataTable, scrollBox, bandBadge, fmtScore, fmtTime, trendCell,
    showError, showStatus, failed, ApiError, shownBand, isAdmin, bandColour, alertsTable,
    BAND_LABELS, SIGNAL_LABELS, DAY_MS,
  } = window.crmHealth;

  const MINUS = "\u2212";
  const HISTORY_DAYS = 90;
  const TIMELINE_DAYS = 90;
  const DEFAULT_BANDS = { healthy_min: 70, at_risk_below: 40 };

  // --- formatting -------------------------------------------------------------------------------

  const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

  /** A number with a real minus sign (read out as "minus"). */
  function minus(text) {
    return text.replace(/^-/, MINUS);
  }

  /** A number the way the drivers write one (signals/indicators.py): two decimals below 10,
   * one above, no trailing zeros; 0.05 stays 0.05. */
  function plainNumber(value) {
    let text = Math.abs(value) < 10 ? value.toFixed(2) : value.toFixed(1);
    text = text.replace(/\.?0+$/, "");
    return text === "-0" ? "0" : minus(text);
  }

  /** A measured value or a threshold in its unit: 11%, −30%, 25 days, 12, 4.3; null: null. */
  function fmtUnit(value, unit) {
    if (value === null || value === undefined) return null;
    switch (unit) {
      case "percent":
        return `${integer.format(Math.round(value * 100))}%`;
      case "change": {
        const percent = Math.round(value * 100);
        return percent > 0 ? `+${percent}%` : percent < 0 ? `${MINUS}${-percent}%` : "0%";
      }
      case "days": {
        const days = Math.round(value);
        return `${integer.format(days)} ${Math.abs(days) === 1 ? "day" : "days"}`;
      }
      case "count":
        return minus(integer.format(Math.round(value)));
      default:
        return plainNumber(value);
    }
  }

  /** A threshold with the side it holds on: "≤ 40%" (higher is healthier) or "≥ 14 days". */
  function fmtThreshold(row, which) {
    const value = row[which];
    const text = fmtUnit(value, row.unit);
    if (text === null) return "—";
    const higherBetter = row.healthy > row.at_risk;
    const atOrBelow = which === "at_risk" ? higherBetter : !higherBetter;
    return `${atOrBelow ? "≤" : "≥"} ${text}`;
  }

  function fmtShare(share) {
    if (share === null || share === undefined) return "—";
    const percent = share * 100;
    if (percent === 0) return "0%";
    return `${percent < 9.95 ? percent.toFixed(1) : Math.round(percent)}%`;
  }

  function fmtPoints(points) {
    if (points === null || points === undefined) return "—";
    return minus(points.toFixed(1));
  }

  function fmtSignedPoints(points) {
    const text = Math.abs(points).toFixed(1);
    if (Number(text) === 0) return "0.0";
    return points > 0 ? `+${text}` : `${MINUS}${text}`;
  }

  /** A day as people read it: "6 Nov 2026" in the browser's language. */
  function fmtDay(value) {
    if (!value) return "—";
    const date = value instanceof Date ? value : localDate(value);
    return date.toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
  }

  function fmtShortDay(date) {
    return date.toLocaleDateString(undefined, { day: "numeric", month: "short" });
  }

  /** "2026-12-31" as that day in the browser's time zone; an ISO time as it is. */
  function localDate(value) {
    if (/^\d{4}-\d{2}-\d{2}$/.test(value)) {
      const [y, m, d] = value.split("-").map(Number);
      return new Date(y, m - 1, d);
    }
    return new Date(value);
  }

  /** A date input's value (yyyy-mm-dd) for a day in the browser's time zone. */
  function inputDay(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  }

  function startOfToday() {
    const now = new Date();
    return new Date(now.getFullYear(), now.getMonth(), now.getDate());
  }

  /** Whole days from today to `day` (negative: gone by). */
  function daysFromToday(day) {
    return Math.round((localDate(day) - startOfToday()) / DAY_MS);
  }

  /** "poorly_sold" → "Poorly sold". */
  function humanise(text) {
    if (!text) return text;
    const words = String(text).replace(/[_-]+/g, " ").trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  /** A wide table in its own scrolling box, which the keyboard can reach and scroll. */
  function scroller(label, table) {
    const box = scrollBox(table);
    box.setAttribute("tabindex", "0");
    box.setAttribute("role", "region");
    box.setAttribute("aria-label", `${label} (table)`);
    return box;
  }

  function plural(count, one, many = `${one}s`) {
    return `${integer.format(count)} ${count === 1 ? one : many}`;
  }

  // --- state ------------------------------------------------------------------------------------

  const state = {
    id: null,
    item: null,
    bands: DEFAULT_BANDS,
    currency: "USD",
    signalMeta: {}, // name -> {label, question, ...} from /api/v1/indicators
    chart: null,
    resize: null,
    events: [],
  };

  function accountPath(suffix = "") {
    return `/api/v1/accounts/${encodeURIComponent(state.id)}${suffix}`;
  }

  function signalName(signal) {
    const meta = state.signalMeta[signal];
    return SIGNAL_LABELS[signal] || (state.item && state.item.custom_signal_labels[signal]) || (meta && meta.label) || signal;
  }

  // --- header -----------------------------------------------------------------------------------

  function stat(term, value, { cls = null } = {}) {
    return el("div", { class: cls ? `stat ${cls}` : "stat" }, el("dt", { text: term }), el("dd", {}, value));
  }

  function money(value) {
    if (value === null || value === undefined) return el("span", { class: "muted", text: "Not set" });
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: state.currency, maximumFractionDigits: 0 }).format(value);
    } catch {
      return `${integer.format(value)} ${state.currency}`;
    }
  }

  function renewal(day) {
    if (!day) return el("span", { class: "muted", text: "Not set" });
    const left = daysFromToday(day);
    const when = left > 0 ? `in ${plural(left, "day")}` : left === 0 ? "today" : `${plural(-left, "day")} ago`;
    return el(
      "span",
      { class: "renewal" },
      el("span", { text: fmtDay(day) }),
      el("span", { class: left <= 30 ? "days-left soon" : "days-left", "data-days-left": left, text: when }),
    );
  }

  function renderHeader(item) {
    const name = item.name || item.id;
    $("#account-name").textContent = name;
    document.title = `${name} · crm-health admin`;
    const a = item.attributes || {};
    const sub = clear($("#account-sub"));
    sub.append(el("span", { text: `CRM record ${item.id}` }));
    if (a.domain) sub.append(el("span", { text: a.domain }));
    const link = clear($("#crm-link-box"));
    if (item.record_url) {
      link.append(
        el(
          "a",
          { id: "crm-link", class: "button-link", href: item.record_url, target: "_blank", rel: "noopener noreferrer" },
          "Open in CRM",
          el("span", { class: "visually-hidden", text: " (opens in a new tab)" }),
          el("span", { "aria-hidden": "true", text: " ↗" }),
        ),
      );
    }
    const owner = item.owner_name || a.owner || item.owner;
    const ownerId = a.owner || item.owner;
    const arr = item.arr !== undefined ? item.arr : a.arr;
    const renewalDate = item.renewal_date !== undefined ? item.renewal_date : a.renewal_date;
    const score = el("span", { class: "score-big" }, fmtScore(item.score), el("span", { class: "score-of", text: item.score === null ? "" : " / 100" }));
    clear($("#summary")).append(
      stat("Health", bandBadge(shownBand(item)), { cls: "stat-band" }),
      stat("Score", score, { cls: "stat-score" }),
      stat("30-day trend", trendCell(item.trend_30d)),
      stat("ARR", el("span", { class: "arr", text: null }, money(arr))),
      stat("Renewal", renewal(renewalDate)),
      stat("Owner", owner ? el("span", {}, owner, owner !== ownerId && ownerId ? el("span", { class: "hint", text: ownerId }) : null) : el("span", { class: "muted", text: "Not set" })),
      stat("Segment", item.segment || a.segment ? humanise(item.segment || a.segment) : el("span", { class: "muted", text: "Not set" })),
      stat("Seats", a.seats === null || a.seats === undefined ? el("span", { class: "muted", text: "Not set" }) : integer.format(a.seats)),
      stat("Open alerts", String(item.alerts_open)),
      stat("Last scored", fmtTime(item.updated_at)),
    );
    const flags = clear($("#account-flags"));
    if (item.deleted_at) flags.append(el("p", { class: "note", text: `Deleted in the CRM on ${fmtTime(item.deleted_at)}.` }));
    // A write-back found no such record: not scored or listed until the CRM sends it.
    if (item.not_found_in_crm) flags.append(el("p", { class: "note", text: `Not found in the CRM since ${fmtTime(item.not_found_in_crm)}: ${item.not_found_reason || ""}` }));
  }

  // --- drivers and indicators -------------------------------------------------------------------

  function renderDrivers(item) {
    const drivers = clear($("#drivers"));
    if (!item.drivers.length) drivers.append(el("li", { class: "muted", text: "No drivers: nothing stands out." }));
    for (const driver of item.drivers) drivers.append(el("li", { text: driver }));
  }

  /** The signals in the order to show: the registry's, then the custom ones. */
  function signalOrder(item) {
    const names = [...Object.keys(SIGNAL_LABELS)];
    for (const name of [...Object.keys(item.indicators || {}), ...Object.keys(item.custom_signals || {})]) {
      if (!names.includes(name)) names.push(name);
    }
    return names;
  }

  function signalScore(item, signal) {
    if (item.signals && signal in item.signals) return item.signals[signal];
    return item.custom_signals ? item.custom_signals[signal] : null;
  }

  const sum = (rows, key) => rows.reduce((total, row) => total + (row[key] || 0), 0);

  function renderIndicators(item) {
    const target = clear($("#indicators"));
    const drivers = item.drivers || [];
    const mentioned = (row) => drivers.some((driver) => driver.startsWith(`${row.label} `));
    const bodies = [];
    for (const signal of signalOrder(item)) {
      const rows = (item.indicators && item.indicators[signal]) || [];
      if (!rows.length && signalScore(item, signal) === undefined) continue;
      const score = signalScore(item, signal);
      const share = sum(rows, "share");
      const points = sum(rows, "points");
      const label = signalName(signal);
      const meta = state.signalMeta[signal];
      const counted = share > 0;
      const silentZero = counted && score === 0 && !rows.some(mentioned);
      const head = el(
        "tr",
        { class: counted ? "signal-row" : "signal-row not-counted" },
        el(
          "th",
          { scope: "rowgroup", colspan: 4 },
          el(
            "span",
            { class: "in-view" },
            el("span", { class: "signal-name", text: label }),
            meta && meta.question ? el("span", { class: "hint", text: humanise(meta.question) }) : null,
            !counted ? el("span", { class: "tag tag-muted", text: "Not counted: weight 0" }) : null,
            silentZero ? el("span", { class: "tag tag-risk", text: `Scores 0: ${fmtPoints(share * 100)} points lost, and no driver names it` }) : null,
          ),
        ),
        el("td", { class: "num signal-score", text: score === null || score === undefined ? "No data" : fmtScore(score) }),
        el("td", { class: "num", text: counted ? fmtShare(share) : "—" }),
        el("td", { class: "num", text: counted ? fmtPoints(points) : "—" }),
      );
      const lines = rows.map((row) => {
        const driver = mentioned(row);
        const noData = row.raw === null || row.raw === undefined;
        const rowCounted = (row.share || 0) > 0;
        return el(
          "tr",
          { class: ["indicator-row", driver ? "is-driver" : null, rowCounted ? null : "not-counted"].filter(Boolean).join(" "), "data-indicator": row.name, "data-signal": signal },
          el(
            "th",
            { scope: "row" },
            el("span", { class: "indicator-name", text: row.label || row.name }),
            driver ? el("span", { class: "tag tag-driver", text: "Driver" }) : null,
            row.explanation ? el("span", { class: "hint", text: row.explanation }) : null,
          ),
          el("td", { class: noData ? "num muted" : "num measured", text: noData ? "No data" : fmtUnit(row.raw, row.unit) }),
          el("td", { class: "num", text: fmtThreshold(row, "at_risk") }),
          el("td", { class: "num", text: fmtThreshold(row, "healthy") }),
          el("td", { class: "num", text: row.score === null || row.score === undefined ? "—" : fmtScore(row.score) }),
          el("td", { class: "num", text: rowCounted ? fmtShare(row.share) : counted ? "Not counted" : "—" }),
          el("td", { class: "num points", text: rowCounted && !noData ? fmtPoints(row.points) : "—" }),
        );
      });
      if (!rows.length) {
        const off = !counted && (!meta || meta.weight === 0);
        lines.push(el("tr", {}, el("td", { colspan: 7, class: "muted" }, el("span", { class: "in-view", text: off ? "Switched off (weight 0) in the configuration in force." : "No indicator of this signal has data." }))));
      }
      bodies.push(el("tbody", { "data-signal": signal }, head, lines));
    }
    const allRows = Object.values(item.indicators || {}).flat();
    const total = sum(allRows, "points");
    const table = el(
      "table",
      { id: "indicator-table", class: "indicators" },
      el("caption", { class: "visually-hidden", text: "Indicators of every signal: measured value, thresholds, score, share of the total and points" }),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { scope: "col", text: "Indicator" }),
          el("th", { scope: "col", class: "num", text: "Measured" }),
          el("th", { scope: "col", class: "num", text: "At risk at" }),
          el("th", { scope: "col", class: "num", text: "Healthy at" }),
          el("th", { scope: "col", class: "num" }, "Score", el("span", { class: "hint", text: "0–100" })),
          el("th", { scope: "col", class: "num", text: "Share of total" }),
          el("th", { scope: "col", class: "num", text: "Points" }),
        ),
      ),
      bodies,
      el(
        "tfoot",
        {},
        el(
          "tr",
          {},
          el("th", { scope: "row", colspan: 6 }, "Total: the points add up to the score", item.score !== null && Math.round(total) !== item.score ? el("span", { class: "hint", text: `The score shown is ${item.score}: a CSM sentiment or too little data sets it apart.` }) : null),
          el("td", { class: "num points", text: fmtPoints(total) }),
        ),
      ),
    );
    target.append(scroller("Indicators", table));
    const coverage = item.coverage;
    $("#coverage").textContent =
      coverage.ratio === null
        ? "No data yet."
        : `${Math.round(coverage.ratio * 100)}% of the configured weight had data. Each indicator's points are its share of the total times its score.`;
  }

  // --- score history chart (uPlot) --------------------------------------------------------------

  function bandRanges() {
    const { healthy_min: healthy, at_risk_below: risk } = state.bands;
    return [
      { band: "healthy", from: healthy, to: 100 },
      { band: "neutral", from: risk, to: healthy },
      { band: "at_risk", from: 0, to: risk },
    ].filter((range) => range.to > range.from);
  }

  function bandWords() {
    const { healthy_min: healthy, at_risk_below: risk } = state.bands;
    return [
      `${BAND_LABELS.healthy} from ${plainNumber(healthy)}`,
      healthy > risk ? `${BAND_LABELS.neutral} ${plainNumber(risk)} to ${plainNumber(healthy)}` : null,
      `${BAND_LABELS.at_risk} below ${plainNumber(risk)}`,
    ].filter(Boolean);
  }

  /** The configuration changes inside the chart's window: from config_changes, else from the
   * history's config_change points. */
  function configChanges(item, start) {
    const changes = (item.config_changes || []).map((change) => ({ ...change, t: new Date(change.at).getTime() }));
    if (!changes.length) {
      for (const point of item.history) if (point.config_change) changes.push({ at: point.at, t: new Date(point.at).getTime() });
    }
    return changes.filter((change) => change.t >= start).sort((a, b) => a.t - b.t);
  }

  /** [times in seconds, scores]: a step series from 90 days ago to now, each point clamped to
   * the window, ending with the score in force now. */
  function historySeries(history, start, end) {
    const xs = [];
    const ys = [];
    for (const point of history) {
      const t = Math.max(new Date(point.at).getTime(), start) / 1000;
      if (xs.length && xs[xs.length - 1] >= t) {
        ys[ys.length - 1] = point.score; // the later point at the same moment wins
        continue;
      }
      xs.push(t);
      ys.push(point.score);
    }
    if (xs.length && xs[xs.length - 1] < end / 1000) {
      xs.push(end / 1000);
      ys.push(ys[ys.length - 1]);
    }
    return [xs, ys];
  }

  function scoreAt(history, t) {
    let found = null;
    for (const point of history) if (new Date(point.at).getTime() <= t) found = point;
    return found;
  }

  function chartHeight(width) {
    return width < 520 ? 220 : 280;
  }

  function renderHistory(item) {
    if (state.chart) state.chart.destroy();
    if (state.resize) state.resize.disconnect();
    state.chart = null;
    const box = clear($("#history-chart"));
    const end = Date.now();
    const start = end - HISTORY_DAYS * DAY_MS;
    const history = item.history || [];
    const scored = history.filter((point) => point.score !== null);
    const changes = configChanges(item, start);
    const [xs, ys] = historySeries(history, start, end);

    // The text alternative: what the chart shows, in words.
    const words = scored.length
      ? `Score over the last ${HISTORY_DAYS} days: ` +
        scored.map((point) => `${point.score} (${BAND_LABELS[point.band] || point.band}) from ${fmtDay(new Date(Math.max(new Date(point.at).getTime(), start)))}`).join(", then ") +
        `. Now ${fmtScore(item.score)}, ${BAND_LABELS[shownBand(item)] || item.band}. Bands: ${bandWords().join(", ")}.`
      : `No score in the last ${HISTORY_DAYS} days.`;
    const changeWords = changes.length
      ? ` The scoring configuration changed ${changes.map((change) => `on ${fmtDay(new Date(change.t))}`).join(", ")}.`
      : "";
    $("#history-summary").textContent = words + changeWords;
    renderHistoryLegend(changes);
    renderHistoryTable(history);

    if (!scored.length || typeof window.uPlot !== "function") {
      box.append(el("p", { class: "muted", text: scored.length ? "The chart could not be drawn." : "No score in the last 90 days." }));
      return;
    }

    const ranges = bandRanges();
    const splits = [...new Set([0, state.bands.at_risk_below, state.bands.healthy_min, 100])].sort((a, b) => a - b);
    const muted = getComputedStyle(document.documentElement).getPropertyValue("--muted").trim() || "#57606a";
    const accent = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#0b5cad";
    const readout = $("#history-readout");

    // Behind the line: one horizontal band per health band, with the configuration's edges.
    function shadeBands(u) {
      const { ctx } = u;
      const { left, top, width, height } = u.bbox;
      const ratio = uPlot.pxRatio;
      ctx.save();
      for (const range of ranges) {
        const y1 = u.valToPos(range.to, "y", true);
        const y2 = u.valToPos(range.from, "y", true);
        ctx.fillStyle = bandColour(range.band, { background: true });
        ctx.fillRect(left, y1, width, y2 - y1);
        ctx.fillStyle = bandColour(range.band);
        ctx.font = `600 ${Math.round(11 * ratio)}px system-ui, sans-serif`;
        ctx.textBaseline = "top";
        ctx.fillText(BAND_LABELS[range.band], left + 6 * ratio, y1 + 4 * ratio);
      }
      ctx.restore();
      box.dataset.bands = JSON.stringify(ranges);
      box.dataset.plot = JSON.stringify({ left: left / ratio, top: top / ratio, width: width / ratio, height: height / ratio, ratio });
    }

    // In front: a dashed line where the scoring configuration changed.
    function drawMarkers(u) {
      const { ctx } = u;
      const { top, height } = u.bbox;
      const ratio = uPlot.pxRatio;
      const drawn = [];
      ctx.save();
      ctx.strokeStyle = "#24292f";
      ctx.fillStyle = "#24292f";
      ctx.lineWidth = 1.5 * ratio;
      ctx.setLineDash([5 * ratio, 4 * ratio]);
      for (const change of changes) {
        const x = Math.round(u.valToPos(change.t / 1000, "x", true));
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        ctx.beginPath();
        ctx.moveTo(x - 5 * ratio, top);
        ctx.lineTo(x + 5 * ratio, top);
        ctx.lineTo(x, top + 7 * ratio);
        ctx.closePath();
        ctx.fill();
        drawn.push(new Date(change.t).toISOString());
      }
      ctx.restore();
      box.dataset.configMarkers = JSON.stringify(drawn);
    }

    function showCursor(u) {
      const left = u.cursor.left;
      if (left === undefined || left === null || left < 0) {
        readout.textContent = "";
        return;
      }
      const t = u.posToVal(left, "x") * 1000;
      const point = scoreAt(history, t);
      readout.textContent = point && point.score !== null
        ? `${fmtDay(new Date(t))}: score ${point.score}, ${BAND_LABELS[point.band] || point.band}`
        : `${fmtDay(new Date(t))}: no score`;
    }

    // Drag across the chart: the two ends go to "Why it moved".
    function selected(u) {
      if (!u.select || u.select.width < 3) return;
      const from = u.posToVal(u.select.left, "x") * 1000;
      const to = u.posToVal(u.select.left + u.select.width, "x") * 1000;
      $("#movement-start").value = inputDay(new Date(from));
      $("#movement-end").value = inputDay(new Date(to));
      explain(new Date(from), new Date(Math.min(to, Date.now())));
    }

    const width = Math.max(240, box.clientWidth);
    const options = {
      width,
      height: chartHeight(width),
      pxAlign: 1,
      padding: [14, 16, 0, 0],
      scales: { x: { time: true, range: [start / 1000, end / 1000] }, y: { auto: false, range: [0, 100] } },
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { size: 8 } },
      select: { show: true },
      axes: [
        {
          stroke: muted,
          font: "12px system-ui, sans-serif",
          space: 70,
          size: 34,
          grid: { show: false },
          ticks: { stroke: "#8c959f", width: 1, size: 5 },
          values: (u, ticks) => ticks.map((tick) => fmtShortDay(new Date(tick * 1000))),
        },
        {
          stroke: muted,
          font: "12px system-ui, sans-serif",
          size: 36,
          splits: () => splits,
          values: (u, ticks) => ticks.map((tick) => plainNumber(tick)),
          grid: { stroke: "#8c959f", width: 1, dash: [3, 3] },
          ticks: { show: false },
        },
      ],
      series: [
        {},
        {
          label: "Score",
          stroke: accent,
          width: 2.5,
          spanGaps: false,
          paths: uPlot.paths.stepped({ align: 1 }),
          points: { show: true, size: 7, fill: accent, stroke: "#fff" },
        },
      ],
      hooks: { drawClear: [shadeBands], draw: [drawMarkers], setCursor: [showCursor], setSelect: [selected] },
    };
    state.chart = new uPlot(options, [xs, ys], box);
    let lastWidth = width;
    state.resize = new ResizeObserver(() => {
      const now = Math.max(240, box.clientWidth);
      if (Math.abs(now - lastWidth) < 2 || !state.chart) return;
      lastWidth = now;
      state.chart.setSize({ width: now, height: chartHeight(now) });
    });
    state.resize.observe(box);
  }

  function renderHistoryLegend(changes) {
    const legend = clear($("#history-legend"));
    const key = (cls, text) => el("li", {}, el("span", { class: `key ${cls}`, "aria-hidden": "true" }), text);
    legend.append(
      el(
        "ul",
        { class: "chart-key" },
        key("key-line", "Score"),
        key("key-healthy", `${BAND_LABELS.healthy} ≥ ${plainNumber(state.bands.healthy_min)}`),
        state.bands.healthy_min > state.bands.at_risk_below ? key("key-neutral", `${BAND_LABELS.neutral} ${plainNumber(state.bands.at_risk_below)}–${plainNumber(state.bands.healthy_min)}`) : null,
        key("key-at_risk", `${BAND_LABELS.at_risk} < ${plainNumber(state.bands.at_risk_below)}`),
        key("key-config", "Configuration changed"),
      ),
    );
    const note = changes.length
      ? el(
          "ul",
          { class: "config-changes" },
          changes.map((change) =>
            el(
              "li",
              {},
              el("strong", { text: `Configuration changed ${fmtDay(new Date(change.t))}` }),
              change.version !== undefined && change.version !== null ? ` (version ${change.version}` : " (",
              change.author ? `${change.version !== undefined && change.version !== null ? ", " : ""}by ${change.author}` : "",
              ")",
              change.comment ? el("span", { class: "comment" }, ": “", el("span", { text: change.comment }), "”") : null,
              ". A move there may be the configuration's, not the customer's.",
            ),
          ),
        )
      : el("p", { class: "hint", text: "The scoring configuration did not change in these 90 days." });
    legend.append(note);
  }

  function renderHistoryTable(history) {
    clear($("#history-table")).append(
      scroller("Score history",
        dataTable(
          {},
          "Score history",
          ["When", ["Score", "num"], "Band", "Note"],
          history.map((point) =>
            el(
              "tr",
              { class: point.config_change ? "config-change" : null },
              el("td", { text: fmtTime(point.at) }),
              el("td", { class: "num", text: fmtScore(point.score) }),
              el("td", {}, bandBadge(point.band)),
              el("td", { text: point.config_change ? "Configuration changed" : "" }),
            ),
          ),
        ),
      ),
    );
  }

  // --- why it moved -----------------------------------------------------------------------------

  /** The chosen day at this time of day, as the 30-day trend compares (today: now). */
  function dayAt(value) {
    const now = new Date();
    const date = localDate(value);
    date.setHours(now.getHours(), now.getMinutes(), now.getSeconds(), now.getMilliseconds());
    return new Date(Math.min(date.getTime(), now.getTime()));
  }

  let explaining = 0;

  async function explain(start, end) {
    const target = $("#movement");
    if (!(start < end)) {
      clear(target).append(el("p", { class: "error-text", text: "Choose a From date before the To date." }));
      return;
    }
    const ticket = ++explaining;
    target.setAttribute("aria-busy", "true");
    try {
      const { data } = await api("GET", accountPath(`/movement?${query({ start: start.toISOString(), end: end.toISOString() })}`));
      if (ticket !== explaining) return;
      renderMovement(data);
    } catch (err) {
      if (ticket !== explaining) return;
      clear(target).append(el("p", { class: "error-text", text: err instanceof ApiError ? `Could not explain the change: ${err.message}` : `Could not explain the change: ${err}` }));
    } finally {
      if (ticket === explaining) target.removeAttribute("aria-busy");
    }
  }

  function pointsCell(points) {
    const direction = points > 0.05 ? "up" : points < -0.05 ? "down" : "flat";
    const arrow = direction === "up" ? "▲ " : direction === "down" ? "▼ " : "";
    return el(
      "td",
      { class: `num pts pts-${direction}` },
      el("span", { "aria-hidden": "true", text: arrow }),
      fmtSignedPoints(points),
    );
  }

  function barCell(points, max) {
    const bar = el("span", { class: `bar ${points >= 0 ? "bar-up" : "bar-down"}` });
    bar.style.width = `${Math.min(50, (Math.abs(points) / max) * 50).toFixed(1)}%`;
    return el("td", { class: "effect", "aria-hidden": "true" }, el("span", { class: "bar-track" }, bar));
  }

  /** "25 days → 80 days" (a value without data reads "No data"). */
  function changeCell(before, after) {
    const text = (value) => (value === null ? "No data" : value);
    return el("td", { class: "num change" }, text(before), el("span", { class: "to", text: " → " }), text(after));
  }

  function endBlock(title, end) {
    return el(
      "div",
      { class: "movement-end" },
      el("span", { class: "movement-when", text: `${title} ${fmtDay(new Date(end.at))}` }),
      el("span", { class: "movement-score" }, el("strong", { text: fmtScore(end.score) }), " ", end.band ? bandBadge(end.band) : null),
    );
  }

  function renderMovement(data) {
    const target = clear($("#movement"));
    target.append(el("p", { class: "movement-summary", text: data.summary }));
    $("#movement-status").textContent = data.summary;
    const change = data.change;
    target.append(
      el(
        "div",
        { class: "movement-ends" },
        endBlock("From", data.start),
        el("span", { class: "movement-arrow", "aria-hidden": "true", text: "→" }),
        endBlock("To", data.end),
        change === null || change === undefined
          ? null
          : el("span", { class: `movement-change pts-${change > 0 ? "up" : change < 0 ? "down" : "flat"}` }, change > 0 ? `+${change}` : change < 0 ? `${MINUS}${-change}` : "0", ` ${Math.abs(change) === 1 ? "point" : "points"}`),
      ),
    );
    const bySignal = new Map();
    for (const row of data.indicators || []) {
      if (!bySignal.has(row.signal)) bySignal.set(row.signal, []);
      bySignal.get(row.signal).push(row);
    }
    const moved = (row) => Math.abs(row.points || 0) >= 0.05;
    const all = [
      ...(data.signals || []).map((row) => row.points || 0),
      ...(data.indicators || []).map((row) => row.points || 0),
      data.configuration_points || 0,
      data.other_points || 0,
    ];
    const max = Math.max(1, ...all.map(Math.abs));
    const rows = [];
    let still = 0;
    for (const signal of data.signals || []) {
      const indicators = (bySignal.get(signal.signal) || []).filter(moved);
      still += (bySignal.get(signal.signal) || []).length - indicators.length;
      if (!moved(signal) && !indicators.length) continue;
      rows.push(
        el(
          "tr",
          { class: "signal-row", "data-signal": signal.signal },
          el("th", { scope: "row", text: signal.label || signalName(signal.signal) }),
          pointsCell(signal.points || 0),
          el("td", { class: "num" }),
          barCell(signal.points || 0, max),
        ),
      );
      for (const row of indicators) {
        const before = fmtUnit(row.before, row.unit);
        const after = fmtUnit(row.after, row.unit);
        rows.push(
          el(
            "tr",
            { class: "indicator-row", "data-indicator": row.name },
            el(
              "th",
              { scope: "row" },
              el("span", { class: "indicator-name", text: row.label || row.name }),
              row.text ? el("span", { class: "hint", text: row.text }) : null,
            ),
            pointsCell(row.points || 0),
            changeCell(before, after),
            barCell(row.points || 0, max),
          ),
        );
      }
    }
    if (Math.abs(data.configuration_points || 0) >= 0.05) {
      rows.push(
        el(
          "tr",
          { class: "signal-row part-config" },
          el("th", { scope: "row" }, "The configuration changed", el("span", { class: "hint", text: "new thresholds, weights or bands, not the customer" })),
          pointsCell(data.configuration_points),
          data.start.config_version !== undefined && data.start.config_version !== null
            ? changeCell(`version ${data.start.config_version}`, `version ${data.end.config_version}`)
            : el("td", { class: "num" }),
          barCell(data.configuration_points, max),
        ),
      );
    }
    if (Math.abs(data.other_points || 0) >= 0.05) {
      rows.push(
        el(
          "tr",
          { class: "signal-row part-other" },
          el("th", { scope: "row" }, "Other", data.other_text ? el("span", { class: "hint", text: data.other_text }) : null),
          pointsCell(data.other_points),
          el("td", { class: "num" }),
          barCell(data.other_points, max),
        ),
      );
    }
    if (!rows.length) {
      target.append(el("p", { class: "muted", text: "Nothing moved the score in this period." }));
      return;
    }
    target.append(
      scroller("Why it moved",
        dataTable(
          { class: "movement-table" },
          "Where the change came from: signals and their indicators, before and after, in points",
          ["What moved", ["Points", "num"], ["Before → after", "num"], "Effect"],
          rows,
        ),
      ),
    );
    if (still) target.append(el("p", { class: "hint", text: `${plural(still, "other indicator")} did not move the score.` }));
  }

  function setUpMovementForm() {
    const form = $("#movement-form");
    const today = startOfToday();
    $("#movement-start").value = inputDay(new Date(today.getTime() - 30 * DAY_MS));
    $("#movement-end").value = inputDay(today);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const start = $("#movement-start").value;
      const end = $("#movement-end").value;
      if (!start || !end) {
        clear($("#movement")).append(el("p", { class: "error-text", text: "Choose both dates." }));
        return;
      }
      if (state.chart) state.chart.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      explain(dayAt(start), dayAt(end));
    });
  }

  // --- timeline ---------------------------------------------------------------------------------

  const WEEK_ROWS = [
    ["active_users", "Active users", "people"],
    ["interactions_ours", "Interactions we started", "ours"],
    ["interactions_customer", "Interactions they started", "customer"],
    ["tickets", "Support tickets", "tickets"],
    ["escalations", "Escalations", "escalations"],
    ["collaborations", "Collaborations", "collab"],
  ];

  const KIND_LABELS = {
    interaction: "Interaction",
    ticket: "Ticket",
    collaboration: "Collaboration",
    contact_gained: "Contact gained",
    contact_left: "Contact left",
    survey: "Survey",
    sentiment: "CSM sentiment",
    band_change: "Band change",
    config_change: "Configuration",
    outcome: "Outcome",
    alert: "Alert",
  };

  function weekBars(weeks, key, cls) {
    const values = weeks.map((week) => week[key] || 0);
    const max = Math.max(1, ...values);
    const width = weeks.length * 10;
    const height = 40;
    return svg(
      "svg",
      { class: `week-bars bars-${cls}`, viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", "aria-hidden": "true", focusable: "false" },
      svg("line", { class: "baseline", x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5 }),
      values.map((value, index) => {
        const h = value ? Math.max(2, (value / max) * (height - 2)) : 0;
        return svg(
          "rect",
          { x: index * 10 + 1.5, width: 7, y: (height - h).toFixed(2), height: h.toFixed(2) },
          svg("title", { text: `Week of ${fmtDay(weeks[index].week)}: ${value}` }),
        );
      }),
    );
  }

  function renderWeeks(weeks) {
    const target = clear($("#timeline-weeks"));
    if (!weeks.length) {
      target.append(el("p", { class: "muted", text: "No weeks to show." }));
      return;
    }
    const grid = el("div", { class: "weeks-grid" });
    for (const [key, label, cls] of WEEK_ROWS) {
      const values = weeks.map((week) => week[key] || 0);
      const total = values.reduce((a, b) => a + b, 0);
      const figure = key === "active_users" ? `latest ${integer.format(values[values.length - 1])} · peak ${integer.format(Math.max(...values))}` : `total ${integer.format(total)}`;
      grid.append(
        el(
          "div",
          { class: "week-row", "data-series": key },
          el("span", { class: "week-label" }, el("span", { class: `key key-${cls}`, "aria-hidden": "true" }), label),
          weekBars(weeks, key, cls),
          el("span", { class: "week-figure", text: figure }),
        ),
      );
    }
    grid.append(
      el(
        "div",
        { class: "week-row week-axis", "aria-hidden": "true" },
        el("span", { class: "week-label" }),
        el("span", { class: "axis-days" }, el("span", { text: `Week of ${fmtShortDay(localDate(weeks[0].week))}` }), el("span", { text: `Week of ${fmtShortDay(localDate(weeks[weeks.length - 1].week))}` })),
        el("span", { class: "week-figure" }),
      ),
    );
    target.append(grid);
    target.append(
      el(
        "details",
        { class: "as-table" },
        el("summary", { text: "Weeks as a table" }),
        scroller("Activity per week",
          dataTable(
            {},
            "Activity per week",
            ["Week of", ["Active users", "num"], ["We started", "num"], ["They started", "num"], ["Tickets", "num"], ["Escalations", "num"], ["Collaborations", "num"]],
            weeks.map((week) =>
              el(
                "tr",
                {},
                el("th", { scope: "row", text: fmtDay(week.week) }),
                ...WEEK_ROWS.map(([key]) => el("td", { class: "num", text: integer.format(week[key] || 0) })),
              ),
            ),
          ),
        ),
      ),
    );
  }

  /** A line under the event's sentence: the few fields of its detail that the sentence leaves
   * out (a sentiment's note, an alert's reason); the rest is in the sentence. */
  function eventDetail(event) {
    const detail = event.detail;
    if (!detail) return null;
    if (typeof detail === "string") return el("span", { class: "hint", text: detail });
    const extra = [detail.note, detail.reason && event.kind === "alert" ? detail.reason : null].filter((text) => typeof text === "string" && text);
    return extra.length ? el("span", { class: "hint", text: extra.join(" · ") }) : null;
  }

  function renderEvents() {
    const list = clear($("#events"));
    const kind = $("#event-kind").value;
    const shown = state.events.filter((event) => !kind || event.kind === kind);
    for (const event of shown) {
      const at = new Date(event.at);
      list.append(
        el(
          "li",
          { class: `event event-${event.kind}`, "data-kind": event.kind },
          el("time", { datetime: event.at, title: fmtTime(event.at), text: fmtDay(at) }),
          el("span", { class: `kind kind-${event.kind}`, text: KIND_LABELS[event.kind] || humanise(event.kind) }),
          el("span", { class: "event-body" }, el("span", { class: "event-text", text: event.text }), eventDetail(event)),
        ),
      );
    }
    $("#events-empty").hidden = shown.length > 0;
    $("#events-empty").textContent = state.events.length ? "No events of this kind in the last 90 days." : "Nothing happened in the last 90 days.";
  }

  function renderTimeline(data) {
    renderWeeks(data.weeks || []);
    state.events = [...(data.events || [])].sort((a, b) => new Date(b.at) - new Date(a.at));
    const select = $("#event-kind");
    const chosen = select.value;
    const counts = new Map();
    for (const event of state.events) counts.set(event.kind, (counts.get(event.kind) || 0) + 1);
    clear(select).append(
      el("option", { value: "", text: `All kinds (${state.events.length})` }),
      ...[...counts].map(([kind, count]) => el("option", { value: kind, text: `${KIND_LABELS[kind] || humanise(kind)} (${count})` })),
    );
    select.value = counts.has(chosen) ? chosen : "";
    $("#events-truncated").hidden = !data.truncated;
    renderEvents();
  }

  async function loadTimeline() {
    try {
      const { data } = await api("GET", accountPath(`/timeline?${query({ days: TIMELINE_DAYS })}`));
      renderTimeline(data);
    } catch (err) {
      clear($("#timeline-weeks")).append(el("p", { class: "error-text", text: `Could not load the timeline: ${err.message || err}` }));
      failed(err);
    }
  }

  // --- contacts ---------------------------------------------------------------------------------

  function renderContacts(item) {
    const target = clear($("#contacts"));
    const contacts = [...(item.contacts || [])].sort(
      (a, b) =>
        Number(Boolean(b.executive)) - Number(Boolean(a.executive)) ||
        Number(Boolean(a.left_at)) - Number(Boolean(b.left_at)) ||
        String(b.last_interaction_at || "").localeCompare(String(a.last_interaction_at || "")) ||
        String(a.contact).localeCompare(String(b.contact)),
    );
    if (!contacts.length) {
      target.append(el("p", { class: "muted", text: "No contacts known for this account." }));
      return;
    }
    const executives = contacts.filter((c) => c.executive && !c.left_at).length;
    const active = contacts.filter((c) => !c.left_at).length;
    target.append(
      el("p", { class: "hint", text: `${plural(active, "contact")} at the account, ${plural(executives, "executive")}${contacts.length > active ? `; ${contacts.length - active} left` : ""}.` }),
      scroller("Contacts",
        dataTable(
          { id: "contacts-table" },
          "Contacts, executives first",
          ["Contact", "Title", "Status", "First seen", "Last interaction"],
          contacts.map((contact) =>
            el(
              "tr",
              { class: contact.left_at ? "contact-left" : null, "data-contact": contact.contact },
              el(
                "th",
                { scope: "row" },
                el("span", { class: "contact-name", text: contact.contact }),
                contact.executive ? el("span", { class: "tag tag-exec", text: "Executive" }) : null,
              ),
              el("td", { text: contact.title || "—" }),
              el("td", { class: contact.left_at ? "left" : "active", text: contact.left_at ? `Left on ${fmtDay(contact.left_at)}` : "At the account" }),
              el("td", { class: "day", text: fmtDay(contact.first_seen_at) }),
              el("td", { class: "day", text: contact.last_interaction_at ? fmtDay(contact.last_interaction_at) : "None" }),
            ),
          ),
        ),
      ),
    );
    if (item.contacts_total && item.contacts_total > contacts.length) {
      target.append(el("p", { class: "hint", text: `Showing ${contacts.length} of ${item.contacts_total} contacts.` }));
    }
  }

  // --- alerts -----------------------------------------------------------------------------------

  async function loadAlerts() {
    try {
      const { data } = await api("GET", `/api/v1/alerts?${query({ account: state.id, status: "open", limit: 100 })}`);
      const target = clear($("#account-alerts"));
      if (!data.items.length) target.append(el("p", { class: "muted", text: "No open alerts." }));
      else target.append(scroller("Open alerts", alertsTable(data.items, loadAlerts)));
      target.append(el("p", {}, el("a", { href: "/admin/alerts", text: "All alerts" })));
    } catch (err) {
      failed(err);
    }
  }

  // --- sentiment --------------------------------------------------------------------------------

  /** The CSM's sentiment: the one in force, a form for admins, and who said what when. */
  async function renderSentiment(item, config) {
    const now = item.sentiment;
    $("#sentiment-now").textContent = now
      ? `${now.rating[0].toUpperCase()}${now.rating.slice(1)}: ${now.reason}, by ${now.author} on ${fmtTime(now.at)}, until ${fmtTime(now.until)}${now.note ? `. Note: ${now.note}` : ""}`
      : "None in force: the computed health applies.";
    const history = clear($("#sentiment-history"));
    $("#sentiment-history-box").hidden = !item.sentiment_history.length;
    if (item.sentiment_history.length) {
      history.append(
        scroller("Sentiment history",
          dataTable(
            {},
            "Sentiments set and cleared, newest first",
            ["When", "Rating", "Reason", "Until", "By", "Note"],
            item.sentiment_history.map((row) =>
              el(
                "tr",
                {},
                el("td", { text: fmtTime(row.at) }),
                el("td", { text: row.rating || "cleared" }),
                el("td", { text: row.reason || "—" }),
                el("td", { text: row.until ? fmtTime(row.until) : "—" }),
                el("td", { text: row.author }),
                el("td", { text: row.note || "" }),
              ),
            ),
          ),
        ),
      );
    }
    const form = $("#sentiment-form");
    if (!isAdmin() || !config) return;
    const settings = config.sentiment;
    const reason = clear($("#sentiment-reason"));
    reason.append(...settings.reasons.map((text) => el("option", { value: text, text })));
    if (now) {
      $("#sentiment-rating").value = now.rating;
      reason.value = now.reason;
    }
    $("#sentiment-days").value = String(settings.default_days);
    form.hidden = false;
    const id = encodeURIComponent(item.id);
    const done = (text) => {
      showStatus(text);
      // The worker scores the account within its next passes: read it again shortly.
      setTimeout(() => refresh(), 1500);
    };
    form.onsubmit = async (event) => {
      event.preventDefault();
      showError("");
      const days = Number($("#sentiment-days").value.trim());
      const body = { rating: $("#sentiment-rating").value, reason: reason.value, days, note: $("#sentiment-note").value.trim() || null };
      try {
        await api("PUT", `/api/v1/accounts/${id}/sentiment`, { body });
        done("Sentiment stored; the account is rescored with it in a moment.");
      } catch (err) {
        failed(err);
      }
    };
    $("#sentiment-clear").onclick = async () => {
      showError("");
      try {
        await api("DELETE", `/api/v1/accounts/${id}/sentiment`);
        done("Sentiment cleared; the computed health applies again in a moment.");
      } catch (err) {
        failed(err);
      }
    };
  }

  // --- the page ---------------------------------------------------------------------------------

  /** What the page needs besides the account; each may fail without taking the page down. */
  async function loadContext(item) {
    if (item.currency) state.currency = item.currency;
    const [config, indicators] = await Promise.allSettled([api("GET", "/api/v1/config"), api("GET", "/api/v1/indicators")]);
    let current = null;
    if (config.status === "fulfilled") {
      current = config.value.data.config;
      if (current.bands) state.bands = { healthy_min: current.bands.healthy_min, at_risk_below: current.bands.at_risk_below };
    } else failed(config.reason);
    if (indicators.status === "fulfilled") {
      state.signalMeta = Object.fromEntries((indicators.value.data.signals || []).map((signal) => [signal.name, signal]));
    }
    return current;
  }

  let context = null;

  async function refresh() {
    let item;
    try {
      item = (await api("GET", accountPath())).data;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) showError(`No account with the record id ${state.id} in your connection.`);
      else failed(err);
      $("#account").hidden = true;
      return;
    }
    state.item = item;
    const config = await (context || (context = loadContext(item)));
    renderHeader(item);
    renderDrivers(item);
    renderHistory(item);
    renderIndicators(item);
    renderContacts(item);
    await renderSentiment(item, config);
  }

  async function initAccount() {
    state.id = document.body.dataset.accountId;
    setUpMovementForm();
    $("#event-kind").addEventListener("change", renderEvents);
    await refresh();
    if (!state.item) return;
    loadAlerts();
    loadTimeline();
    $("#movement-form").requestSubmit();
  }

  window.crmHealth.pages.account = initAccount;
})();
