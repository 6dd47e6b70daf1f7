// crm-health admin: the portfolio home (/admin), the screen a CS team works from. Headline
// figures, ARR and accounts by band, 90 days of the portfolio (uPlot), the week's biggest
// movers, renewals due, the score distribution and the account list, all under one set of
// filters kept in the address. Helpers come from admin.js (window.crmHealth); no inline script
// or style (CSP), and every text from the CRM goes in as text.
"use strict";

(() => {
  const {
    $, el, svg, append, api, query, clear, dataTable, scrollBox, clearRows, keepInAddress, showPage,
    stepPages, bandBadge, fmtScore, fmtTime, trendCell, showError, showStatus, failed, ApiError,
    shownBand, dayValue, sparkline, bandColour, bandOf, BAND_LABELS, DAY_MS,
  } = window.crmHealth;

  // Tables read best-first; the chart stacks the band that matters most at the bottom, on
  // its baseline, where a change in it is easiest to read.
  const ORDER = ["healthy", "neutral", "at_risk", "onboarding", "unknown"];
  const STACK = ["at_risk", "neutral", "healthy", "onboarding", "unknown"];
  const ME = "@me"; // the owner filter's "My accounts": resolved through the user's preferences
  const FILTERS = ["owner", "segment", "band", "renewal_within_days"];
  const DEFAULTS = { owner: "", segment: "", band: "", renewal_within_days: "", q: "", sort: "score", limit: 50, offset: 0, measure: "arr" };
  const DEFAULT_BANDS = { at_risk_below: 40, healthy_min: 70 };
  const SHOWN_ROWS = 8; // movers and renewals before "Show all"
  // Segment words written in capitals when a segment value is shown ("smb" -> "SMB").
  const ACRONYMS = new Set(["smb", "sme", "mm", "emea", "apac", "amer", "latam", "na", "eu", "uk", "us", "vip", "b2b", "b2c", "saas", "kam"]);

  const COUNT = new Intl.NumberFormat();
  const PERCENT = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
  const DAY = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
  const SHORT_DAY = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", timeZone: "UTC" });

  // --- formatting --------------------------------------------------------------------------

  /** Money in `currency`: `full` for tables and titles ($276,500), `short` for tiles ($277K). */
  function moneyIn(currency) {
    const make = (options) => {
      try {
        return new Intl.NumberFormat(undefined, { style: "currency", currency, ...options });
      } catch {
        return new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", ...options });
      }
    };
    const full = make({ minimumFractionDigits: 0, maximumFractionDigits: 0 });
    const compact = make({ notation: "compact", maximumSignificantDigits: 3 });
    const known = (value) => value !== null && value !== undefined && !Number.isNaN(Number(value));
    return {
      full: (value) => (known(value) ? full.format(value) : "—"),
      short: (value) => (!known(value) ? "—" : Math.abs(value) < 10000 ? full.format(value) : compact.format(value)),
    };
  }

  function count(value) {
    return value === null || value === undefined ? "—" : COUNT.format(value);
  }

  function plural(n, one, many = `${one}s`) {
    return `${count(n)} ${n === 1 ? one : many}`;
  }

  /** A CRM value as a person reads it: "poorly_sold" -> "Poorly sold", "smb" -> "SMB"; a value
   * with capitals of its own is left as it is. */
  function humanise(value) {
    if (value === null || value === undefined || value === "") return "—";
    const text = String(value);
    if (/[A-Z]/.test(text)) return text;
    const words = text.split(/[_\-\s]+/).filter(Boolean);
    if (!words.length) return text;
    return words
      .map((word, index) => (ACRONYMS.has(word) ? word.toUpperCase() : index === 0 ? word[0].toUpperCase() + word.slice(1) : word))
      .join(" ");
  }

  function fmtDay(day) {
    return day ? DAY.format(new Date(dayValue(day))) : "—";
  }

  /** Whole days from today (the browser's calendar day) to `day` ("2027-03-01"). */
  function daysUntil(day) {
    const now = new Date();
    return Math.round((dayValue(day) - Date.UTC(now.getFullYear(), now.getMonth(), now.getDate())) / DAY_MS);
  }

  function daysLeftText(days) {
    if (days === null || days === undefined) return "";
    if (days === 0) return "today";
    if (days < 0) return `${plural(-days, "day")} overdue`;
    return `in ${plural(days, "day")}`;
  }

  /** A CSS custom property of the page, `fallback` without one. */
  function cssVar(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  /** A band's colour on charts: the page palette (bandColour); onboarding gets a hue of its own
   * so that it is not read as neutral. */
  function chartColour(band) {
    return band === "onboarding" ? cssVar("--pf-onboarding", "#0969da") : bandColour(band);
  }

  /** `colour` ("#rrggbb") mixed with white, `strength` of it kept: an opaque fill. */
  function tint(colour, strength) {
    const found = /^#([0-9a-f]{6})$/i.exec(colour.trim());
    if (!found) return colour;
    const n = parseInt(found[1], 16);
    const mix = (c) => Math.round(c * strength + 255 * (1 - strength));
    return `rgb(${mix(n >> 16)} ${mix((n >> 8) & 255)} ${mix(n & 255)})`;
  }

  function safeUrl(url) {
    return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
  }

  function accountLink(item) {
    return el("a", { href: `/admin/accounts/${encodeURIComponent(item.id)}`, text: item.name || item.id });
  }

  /** "Open in CRM" for a row whose account the CRM can show, in a new tab. */
  function crmLink(item) {
    const href = safeUrl(item.record_url);
    if (!href) return null;
    return el(
      "a",
      { class: "crm-link", href, target: "_blank", rel: "noopener noreferrer" },
      "Open in CRM",
      el("span", { class: "visually-hidden", text: `: ${item.name || item.id} (opens in a new tab)` }),
      el("span", { "aria-hidden": "true", text: " ↗" }),
    );
  }

  function nameCell(item) {
    return el("th", { scope: "row", class: "name" }, el("span", { class: "name-cell" }, accountLink(item), crmLink(item)));
  }

  function ownerText(item) {
    return item.owner_name || item.owner || "—";
  }

  function setBusy(selector, busy) {
    const node = $(selector);
    if (node) node.setAttribute("aria-busy", busy ? "true" : "false");
  }

  // --- the page ----------------------------------------------------------------------------

  function initPortfolio() {
    const params = new URLSearchParams(location.search);
    const state = { ...DEFAULTS };
    for (const name of ["owner", "segment", "band", "renewal_within_days", "q", "sort"]) {
      if (params.get(name)) state[name] = params.get(name);
    }
    state.limit = Math.min(500, Math.max(1, Number(params.get("limit")) || DEFAULTS.limit));
    state.offset = Math.max(0, Number(params.get("offset")) || 0);
    if (params.get("measure") === "accounts") state.measure = "accounts";
    if (!ORDER.includes(state.band)) state.band = "";
    if (!/^\d+$/.test(state.renewal_within_days)) state.renewal_within_days = "";

    const form = $("#filters");
    const dialog = $("#me-dialog");
    let bands = { ...DEFAULT_BANDS };
    let bandsFromConfig = false;
    let money = moneyIn("USD");
    let me = null; // the owner the user said they are (server-side preference)
    let pendingOwner = null; // the owner filter's value to restore if the question is cancelled
    const segments = new Map(); // value -> accounts (facets seen so far)
    const owners = new Map(); // owner id -> name or null
    let portfolio = null; // the last answer of /api/v1/portfolio
    let portfolioDone = Promise.resolve();
    let portfolioSeq = 0;
    let listSeq = 0;
    let distributionSeq = 0;
    let distribution = null; // {scores, unscored}
    let chart = null;

    // -- filters, the address and the export link

    function ownerFilter() {
      return state.owner === ME ? me || "" : state.owner;
    }

    function filters() {
      return { band: state.band, segment: state.segment, owner: ownerFilter(), renewal_within_days: state.renewal_within_days };
    }

    function listQuery() {
      return { ...filters(), q: state.q, sort: state.sort, limit: state.limit, offset: state.offset };
    }

    function remember() {
      const shown = {};
      for (const [name, value] of Object.entries(state)) if (String(value) !== String(DEFAULTS[name])) shown[name] = value;
      keepInAddress("/admin", shown);
      const link = $("#export-csv");
      const csv = query({ ...filters(), q: state.q, sort: state.sort });
      link.href = `/api/v1/accounts.csv${csv ? `?${csv}` : ""}`;
    }

    /** A select showing `value` even when it is not (yet) among its options. */
    function ensureOption(select, value, text) {
      if (value && ![...select.options].some((option) => option.value === value)) select.append(el("option", { value, text }));
    }

    function showFilters() {
      ensureOption(form.elements.segment, state.segment, humanise(state.segment));
      ensureOption(form.elements.owner, state.owner, state.owner);
      ensureOption(form.elements.renewal_within_days, state.renewal_within_days, `Within ${state.renewal_within_days} days`);
      for (const name of FILTERS) form.elements[name].value = state[name];
      $("#f-q").value = state.q;
      const note = $("#me-note");
      note.hidden = state.owner !== ME || !me;
      if (me) $("#me-text").textContent = `My accounts: you are ${owners.get(me) || me}.`;
    }

    function ownerLabel(value) {
      return owners.get(value) || value;
    }

    function fillFacets(facets) {
      if (!facets) return;
      for (const segment of facets.segments || []) segments.set(segment.value, segment.accounts);
      for (const owner of facets.owners || []) owners.set(owner.value, owner.name || owners.get(owner.value) || null);
      const segmentSelect = form.elements.segment;
      const keepSegment = state.segment;
      append(clear(segmentSelect), [
        el("option", { value: "", text: "Any segment" }),
        [...segments.keys()]
          .sort((a, b) => humanise(a).localeCompare(humanise(b)))
          .map((value) => el("option", { value, text: humanise(value) })),
      ]);
      const ownerSelect = form.elements.owner;
      const sortedOwners = [...owners.keys()].sort((a, b) => ownerLabel(a).localeCompare(ownerLabel(b)));
      append(clear(ownerSelect), [
        el("option", { value: "", text: "Anyone" }),
        el("option", { value: ME, text: "My accounts" }),
        sortedOwners.length ? el("optgroup", { label: "Owners" }, sortedOwners.map((value) => el("option", { value, text: ownerLabel(value) }))) : null,
      ]);
      state.segment = keepSegment;
      showFilters();
    }

    // -- "My accounts": which owner the user is, asked once and kept server-side

    function askWhoIAm(previous) {
      pendingOwner = previous;
      const select = clear($("#me-owner"));
      const sortedOwners = [...owners.keys()].sort((a, b) => ownerLabel(a).localeCompare(ownerLabel(b)));
      append(select, [
        el("option", { value: "", text: sortedOwners.length ? "Choose an owner…" : "No owners in your accounts yet" }),
        sortedOwners.map((value) => el("option", { value, text: ownerLabel(value) })),
      ]);
      select.value = me && owners.has(me) ? me : "";
      $("#me-save").disabled = !sortedOwners.length;
      dialog.showModal();
      select.focus();
    }

    $("#me-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const chosen = $("#me-owner").value;
      if (!chosen) {
        $("#me-owner").focus();
        return;
      }
      $("#me-save").disabled = true;
      try {
        const { data } = await api("PUT", "/api/v1/me/preferences", { body: { owner: chosen } });
        me = (data && data.owner) || chosen;
        dialog.close();
        pendingOwner = null;
        state.owner = ME;
        state.offset = 0;
        showStatus(`Saved: “My accounts” shows ${ownerLabel(me)}'s accounts.`);
        reload();
      } catch (err) {
        failed(err);
      } finally {
        $("#me-save").disabled = false;
      }
    });

    function cancelAsk() {
      if (dialog.open) dialog.close();
      if (pendingOwner !== null) {
        state.owner = pendingOwner;
        pendingOwner = null;
        showFilters();
        remember();
      }
      form.elements.owner.focus();
    }
    $("#me-cancel").addEventListener("click", cancelAsk);
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      cancelAsk();
    });
    $("#me-change").addEventListener("click", () => askWhoIAm(state.owner));

    form.addEventListener("change", (event) => {
      if (event.target.name === "owner" && event.target.value === ME && !me) {
        const previous = state.owner === ME ? "" : state.owner;
        event.target.value = previous;
        askWhoIAm(previous);
        return;
      }
      for (const name of FILTERS) state[name] = form.elements[name].value;
      state.offset = 0;
      reload();
    });
    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("reset", (event) => {
      event.preventDefault();
      for (const name of FILTERS) state[name] = "";
      state.offset = 0;
      showFilters();
      reload();
    });

    $("#find").addEventListener("submit", (event) => {
      event.preventDefault();
      state.q = $("#f-q").value.trim();
      state.offset = 0;
      reload({ everything: false });
    });

    for (const input of document.querySelectorAll("#trend-measure input")) {
      input.checked = input.value === state.measure;
      input.addEventListener("change", () => {
        state.measure = input.value;
        remember();
        renderTrend();
      });
    }

    // -- headline tiles

    function tile(key, label, value, { full = null, raw = null, note = null, tone = null } = {}) {
      return el(
        "li",
        { class: `tile${tone ? ` tile-${tone}` : ""}`, "data-tile": key },
        el("span", { class: "tile-label", text: label }),
        el("data", { class: "tile-value", value: raw ?? "", title: full, text: value }),
        note ? el("span", { class: "tile-note", text: note }) : null,
      );
    }

    function renderTiles(data) {
      const t = data.totals;
      const withArr = t.accounts - (t.accounts_without_arr || 0);
      const share = t.arr > 0 ? t.arr_at_risk / t.arr : null;
      const renewals = data.renewals;
      const renewingArr = renewals.bands.reduce((sum, band) => sum + (band.arr || 0), 0);
      const renewingAtRisk = renewals.bands.find((band) => band.band === "at_risk");
      clear($("#tiles")).append(
        tile("accounts", "Accounts", count(t.accounts), {
          raw: t.accounts,
          note: t.accounts_without_arr ? `${count(t.accounts_without_arr)} without ARR` : "All with ARR",
        }),
        tile("arr", "ARR", money.short(t.arr), {
          raw: t.arr,
          full: money.full(t.arr),
          note: `${money.full(t.arr)} across ${plural(withArr, "account")}`,
        }),
        tile("arr-at-risk", "ARR at risk", money.short(t.arr_at_risk), {
          raw: t.arr_at_risk,
          full: money.full(t.arr_at_risk),
          tone: t.arr_at_risk > 0 ? "risk" : null,
          note: `${share === null ? "—" : PERCENT.format(share)} of ARR · ${plural(t.accounts_at_risk, "account")} at risk`,
        }),
        tile("renewals", `Renewing in ${renewals.days} days`, money.short(renewingArr), {
          raw: renewingArr,
          full: money.full(renewingArr),
          note:
            `${plural(renewals.total, "account")}` +
            (renewingAtRisk && renewingAtRisk.accounts ? ` · ${money.short(renewingAtRisk.arr)} at risk` : ""),
        }),
      );
      setBusy("#tiles", false);
    }

    // -- ARR and accounts by band

    function splitBar(label, parts, total, format) {
      return [
        el("span", { class: "split-label", text: label }),
        el(
          "span",
          { class: "split-bar", "aria-hidden": "true" },
          parts
            .filter((part) => part.value > 0 && total > 0)
            .map((part) => {
              const piece = el("span", { class: `split-seg seg-${part.band}`, title: `${BAND_LABELS[part.band]}: ${format(part.value)}` });
              piece.style.width = `${((part.value / total) * 100).toFixed(2)}%`;
              piece.style.background = chartColour(part.band);
              return piece;
            }),
        ),
      ];
    }

    function renderBands(data) {
      const rows = ORDER.map((band) => data.bands.find((found) => found.band === band) || { band, accounts: 0, arr: 0 });
      const totalArr = data.totals.arr || 0;
      const totalAccounts = data.totals.accounts || 0;
      const table = dataTable(
        { id: "band-table", class: "compact-table" },
        "Accounts and ARR by health band",
        ["Band", ["Accounts", "num"], ["ARR (share)", "num"]],
        rows.map((row) =>
          el(
            "tr",
            { "data-band": row.band },
            el("th", { scope: "row" }, bandBadge(row.band)),
            el("td", { class: "num accounts", text: count(row.accounts) }),
            el(
              "td",
              { class: "num arr" },
              el("span", { class: "value", text: money.full(row.arr) }),
              el("span", { class: "sub share", text: totalArr > 0 ? PERCENT.format((row.arr || 0) / totalArr) : "—" }),
            ),
          ),
        ),
      );
      table.append(
        el(
          "tfoot",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "row", text: "Total" }),
            el("td", { class: "num", text: count(totalAccounts) }),
            el("td", { class: "num", text: money.full(totalArr) }),
          ),
        ),
      );
      clear($("#band-split")).append(
        el(
          "div",
          { class: "split" },
          splitBar("ARR", rows.map((row) => ({ band: row.band, value: row.arr || 0 })), totalArr, money.full),
          splitBar("Accounts", rows.map((row) => ({ band: row.band, value: row.accounts || 0 })), totalAccounts, count),
        ),
        scrollBox(table),
      );
      setBusy("#band-split", false);
    }

    // -- 90 days of the portfolio (uPlot)

    function measureFormat(measure) {
      return measure === "arr" ? money : { full: count, short: count };
    }

    function trendSummary(history, measure) {
      const format = measureFormat(measure);
      const first = history[0];
      const last = history[history.length - 1];
      const value = (point, band) => (point.bands[band] && point.bands[band][measure]) || 0;
      const total = (point) => ORDER.reduce((sum, band) => sum + value(point, band), 0);
      const what = measure === "arr" ? "ARR" : "Accounts";
      const since = `since ${SHORT_DAY.format(new Date(dayValue(first.day)))}`;
      const visible = `${what} at risk ${format.short(value(first, "at_risk"))} → ${format.short(value(last, "at_risk"))} ${since}; total ${format.short(total(first))} → ${format.short(total(last))}.`;
      const perBand = ORDER.map((band) => `${BAND_LABELS[band]} ${format.full(value(first, band))} → ${format.full(value(last, band))}`).join("; ");
      return { visible, hidden: ` By band, ${fmtDay(first.day)} to ${fmtDay(last.day)}: ${perBand}.` };
    }

    function trendTable(history, measure) {
      const format = measureFormat(measure);
      // One row a week, ending today: 13 rows say what 91 would.
      const picked = [];
      for (let index = history.length - 1; index >= 0; index -= 7) picked.unshift(history[index]);
      if (picked[0] !== history[0]) picked.unshift(history[0]);
      const value = (point, band) => (point.bands[band] && point.bands[band][measure]) || 0;
      return dataTable(
        { id: "trend-table", class: "compact-table" },
        `${measure === "arr" ? "ARR" : "Accounts"} by band, one row a week over 90 days`,
        ["Day", ...ORDER.map((band) => [BAND_LABELS[band], "num"]), ["Total", "num"]],
        picked.map((point) =>
          el(
            "tr",
            {},
            el("th", { scope: "row", text: fmtDay(point.day) }),
            ORDER.map((band) => el("td", { class: "num", text: format.full(value(point, band)) })),
            el("td", { class: "num", text: format.full(ORDER.reduce((sum, band) => sum + value(point, band), 0)) }),
          ),
        ),
      );
    }

    function chartSize(box) {
      const width = Math.max(240, Math.floor(box.clientWidth));
      return { width, height: width < 520 ? 220 : 280 };
    }

    function renderTrend() {
      const figure = clear($("#trend"));
      if (chart) {
        chart.destroy();
        chart = null;
      }
      const history = (portfolio && portfolio.history) || [];
      setBusy("#trend", false);
      if (!history.length) {
        figure.append(el("p", { class: "muted", text: "No history yet: the chart fills in as accounts are scored day by day." }));
        return;
      }
      const measure = state.measure;
      const format = measureFormat(measure);
      const xs = history.map((point) => dayValue(point.day) / 1000);
      const raw = {};
      for (const band of STACK) raw[band] = history.map((point) => (point.bands[band] && point.bands[band][measure]) || 0);
      // Stacked: each band drawn as the running total up to it, tallest first, so that each
      // lower band's opaque fill covers the part of the one above that is its own.
      const shown = STACK.filter((band) => raw[band].some((value) => value > 0));
      const cumulative = {};
      let running = xs.map(() => 0);
      for (const band of shown) {
        running = running.map((sum, index) => sum + raw[band][index]);
        cumulative[band] = running;
      }
      const drawn = [...shown].reverse();
      const summary = trendSummary(history, measure);
      const box = el("div", { class: "pf-chart", "aria-hidden": "true" });
      figure.append(
        box,
        el("figcaption", {}, el("span", { text: summary.visible }), el("span", { class: "visually-hidden", text: summary.hidden })),
        el("details", { class: "chart-table" }, el("summary", { text: "Show the chart as a table" }), scrollBox(trendTable(history, measure))),
      );
      if (!window.uPlot || !shown.length) {
        box.append(el("p", { class: "muted", text: shown.length ? "The chart could not be drawn; the table below has its figures." : "Nothing to draw: every band is empty." }));
        return;
      }
      const muted = cssVar("--muted", "#57606a");
      const grid = { stroke: "#e6e9ed", width: 1 };
      const options = {
        ...chartSize(box),
        tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        cursor: { drag: { x: false, y: false }, points: { show: false } },
        legend: { live: true },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1] } },
        axes: [
          { stroke: muted, grid, ticks: grid, space: 70, values: (u, splits) => splits.map((ts) => SHORT_DAY.format(new Date(ts * 1000))) },
          {
            stroke: muted,
            grid,
            ticks: grid,
            size: 64,
            incrs: measure === "arr" ? undefined : [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000],
            values: (u, splits) => splits.map((value) => format.short(value)),
          },
        ],
        series: [
          { label: "Day", value: (u, ts) => DAY.format(new Date((ts === null || ts === undefined ? xs[xs.length - 1] : ts) * 1000)) },
          ...drawn.map((band) => ({
            label: BAND_LABELS[band],
            stroke: chartColour(band),
            fill: tint(chartColour(band), band === "unknown" ? 0.35 : 0.5),
            width: 1.5,
            points: { show: false },
            value: (u, value, series, index) => (index === null || index === undefined ? format.full(raw[band][raw[band].length - 1]) : format.full(raw[band][index])),
          })),
        ],
      };
      chart = new window.uPlot(options, [xs, ...drawn.map((band) => cumulative[band])], box);
      box.dataset.measure = measure;
    }

    // Charts follow their box: uPlot draws at a pixel size, the histogram too.
    const resized = new ResizeObserver(() => {
      const box = $("#trend .pf-chart");
      if (chart && box) {
        const size = chartSize(box);
        if (size.width !== chart.width || size.height !== chart.height) chart.setSize(size);
      }
      const target = $("#distribution");
      if (distribution && target.dataset.width !== String(target.clientWidth)) renderDistribution();
    });
    resized.observe($("#trend"));
    resized.observe($("#distribution"));

    // -- movers and renewals

    function expandable(table, rows, noun) {
      if (rows.length <= SHOWN_ROWS) return [scrollBox(table)];
      rows.slice(SHOWN_ROWS).forEach((row) => (row.hidden = true));
      const button = el("button", {
        type: "button",
        class: "link-button more",
        "aria-expanded": "false",
        text: `Show all ${rows.length} ${noun}`,
        onclick: () => {
          const open = button.getAttribute("aria-expanded") !== "true";
          rows.slice(SHOWN_ROWS).forEach((row) => (row.hidden = !open));
          button.setAttribute("aria-expanded", String(open));
          button.textContent = open ? `Show the first ${SHOWN_ROWS}` : `Show all ${rows.length} ${noun}`;
        },
      });
      return [scrollBox(table), button];
    }

    function renderMovers(movers) {
      $("#movers-title").textContent = movers.days === 7 ? "Biggest movers this week" : `Biggest movers, last ${movers.days} days`;
      const target = clear($("#movers"));
      setBusy("#movers", false);
      if (!movers.items.length) {
        target.append(el("p", { class: "muted", text: `No score moved in the last ${plural(movers.days, "day")}.` }));
        return;
      }
      const rows = movers.items.map((item) =>
        el(
          "tr",
          { "data-account": item.id },
          nameCell(item),
          el(
            "td",
            { class: "num change" },
            el("strong", {}, trendCell(item.change)),
            el(
              "span",
              { class: "sub score-move" },
              fmtScore(item.score_before),
              el("span", { "aria-hidden": "true", text: " → " }),
              el("span", { class: "visually-hidden", text: " to " }),
              fmtScore(item.score),
            ),
          ),
          el(
            "td",
            { class: "bands" },
            bandBadge(item.band),
            item.band_before && item.band_before !== item.band
              ? el("span", { class: "sub band-before", text: `was ${BAND_LABELS[item.band_before] || item.band_before}` })
              : null,
          ),
          el("td", { class: "num", text: money.full(item.arr) }),
        ),
      );
      const table = dataTable(
        { id: "movers-table", class: "compact-table" },
        `Accounts whose score moved most in the last ${plural(movers.days, "day")}: change with the score before and now, band now and before, ARR`,
        ["Account", ["Change", "num"], "Band", ["ARR", "num"]],
        rows,
      );
      target.append(...expandable(table, rows, "movers"));
    }

    function renderRenewals(renewals) {
      $("#renewals-title").textContent = `Renewals in the next ${renewals.days} days`;
      const target = clear($("#renewals"));
      setBusy("#renewals", false);
      if (!renewals.total) {
        target.append(el("p", { class: "muted", text: `No renewals in the next ${renewals.days} days.` }));
        return;
      }
      const stats = ORDER.map((band) => renewals.bands.find((found) => found.band === band)).filter((found) => found && found.accounts > 0);
      target.append(
        el(
          "ul",
          { class: "band-stats", "aria-label": "Renewals by band" },
          stats.map((found) =>
            el(
              "li",
              { "data-band": found.band },
              bandBadge(found.band),
              el("span", { class: "stat" }, el("strong", { text: count(found.accounts) }), ` · ${money.short(found.arr)}`),
            ),
          ),
        ),
      );
      const rows = renewals.items.map((item) =>
        el(
          "tr",
          { "data-account": item.id },
          nameCell(item),
          el(
            "td",
            { class: "renews" },
            el("span", { class: "nowrap", text: SHORT_DAY.format(new Date(dayValue(item.renewal_date))), title: fmtDay(item.renewal_date) }),
            el("span", { class: `sub days-left${item.days_left <= 30 ? " soon" : ""}`, text: daysLeftText(item.days_left) }),
          ),
          el(
            "td",
            {},
            bandBadge(item.band),
            item.score === null || item.score === undefined ? null : el("span", { class: "sub score-note", text: `score ${fmtScore(item.score)}` }),
          ),
          el("td", { class: "num", text: money.full(item.arr) }),
        ),
      );
      const table = dataTable(
        { id: "renewals-table", class: "compact-table" },
        `Accounts renewing in the next ${renewals.days} days, soonest first, with days left, band, score and ARR`,
        ["Account", "Renews", "Band", ["ARR", "num"]],
        rows,
      );
      target.append(...expandable(table, rows, "renewals"));
      if (renewals.total > renewals.items.length) {
        target.append(el("p", { class: "hint", text: `The ${renewals.items.length} soonest of ${renewals.total}.` }));
      }
      const listAll = el("button", {
        type: "button",
        class: "link-button",
        text: "List them in the accounts below",
        onclick: () => {
          state.renewal_within_days = String(renewals.days);
          state.sort = "renewal";
          state.offset = 0;
          ensureOption(form.elements.renewal_within_days, state.renewal_within_days, `Within ${renewals.days} days`);
          showFilters();
          reload().then(() => $("#accounts-title").scrollIntoView({ block: "start" }));
        },
      });
      target.append(el("p", { class: "more-line" }, listAll));
    }

    // -- score distribution: bars split and coloured at the band edges in force

    function histogram(scores, unscored, width) {
      const edges = [...new Set([bands.at_risk_below, bands.healthy_min])].filter((edge) => edge > 0 && edge < 100);
      const cuts = [...new Set([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, ...edges])].sort((a, b) => a - b);
      let bins = cuts.map((from, index) => ({ from, to: index + 1 < cuts.length ? cuts[index + 1] : 100, count: 0 }));
      // Scores are whole numbers: a bin between two edges that holds none (69.5 to 70) goes.
      bins = bins.filter((bin, index) => Math.ceil(bin.from) <= (index === bins.length - 1 ? 100 : Math.ceil(bin.to) - 1));
      for (const score of scores) {
        let index = bins.length - 1;
        while (index > 0 && score < bins[index].from) index -= 1;
        bins[index].count += 1;
      }
      const label = (bin, index) => {
        const low = Math.ceil(bin.from);
        const high = index === bins.length - 1 ? 100 : Math.ceil(bin.to) - 1;
        return low === high ? String(low) : `${low}–${high}`;
      };
      const height = 200;
      const left = 34;
      const right = 10;
      const top = 22;
      const bottom = 26;
      const max = Math.max(1, ...bins.map((bin) => bin.count));
      const x = (score) => left + (score / 100) * (width - left - right);
      const y = (n) => height - bottom - (n / max) * (height - bottom - top);
      const perBand = { at_risk: 0, neutral: 0, healthy: 0 };
      for (const score of scores) perBand[bandOf(score, bands)] += 1;
      const ranges = bins
        .map((bin, index) => [label(bin, index), bin.count])
        .filter(([, n]) => n > 0)
        .map(([range, n]) => `${range}: ${n}`)
        .join(", ");
      const edgeWords = `at risk below ${bands.at_risk_below}, healthy from ${bands.healthy_min}`;
      const chart = svg(
        "svg",
        {
          id: "histogram",
          width,
          height,
          viewBox: `0 0 ${width} ${height}`,
          role: "img",
          "aria-label": `Score distribution of ${plural(scores.length, "scored account")} (${edgeWords}): at risk ${perBand.at_risk}, neutral ${perBand.neutral}, healthy ${perBand.healthy}. By score range: ${ranges || "none"}.`,
        },
        [0, Math.round(max / 2), max]
          .filter((value, index, all) => all.indexOf(value) === index)
          .map((value) => [
            svg("line", { class: value === 0 ? "axis" : "grid", x1: left, x2: width - right, y1: y(value).toFixed(1), y2: y(value).toFixed(1) }),
            svg("text", { x: left - 6, y: (y(value) + 4).toFixed(1), "text-anchor": "end", text: String(value) }),
          ]),
        [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
          .filter((tick) => width >= 480 || tick % 20 === 0)
          .map((tick) => svg("text", { x: x(tick).toFixed(1), y: height - 8, "text-anchor": tick === 0 ? "start" : tick === 100 ? "end" : "middle", text: String(tick) })),
        bins.map((bin, index) => {
          const band = bandOf(bin.from, bands);
          const x0 = x(bin.from) + 1.5;
          const barWidth = Math.max(2, x(index === bins.length - 1 ? 100 : bin.to) - x(bin.from) - 3);
          return svg(
            "g",
            { class: "bucket", "data-from": bin.from, "data-to": bin.to, "data-band": band, "data-count": bin.count },
            svg(
              "rect",
              { class: `bar bar-${band}`, x: x0.toFixed(1), y: y(bin.count).toFixed(1), width: barWidth.toFixed(1), height: Math.max(0, height - bottom - y(bin.count)).toFixed(1) },
              svg("title", { text: `${label(bin, index)}: ${plural(bin.count, "account")} (${BAND_LABELS[band]})` }),
            ),
            bin.count ? svg("text", { class: "count", x: (x0 + barWidth / 2).toFixed(1), y: (y(bin.count) - 4).toFixed(1), "text-anchor": "middle", text: String(bin.count) }) : null,
          );
        }),
        edges.map((edge) =>
          svg(
            "g",
            { class: "band-edge", "data-edge": edge },
            svg("line", { class: "threshold", x1: x(edge).toFixed(1), x2: x(edge).toFixed(1), y1: top - 6, y2: height - bottom }),
            svg("text", { class: "edge-label", x: x(edge).toFixed(1), y: top - 10, "text-anchor": "middle", text: String(edge) }),
          ),
        ),
      );
      const key = el(
        "ul",
        { class: "hist-key", "aria-hidden": "true" },
        [
          ["at_risk", `At risk: below ${bands.at_risk_below}`],
          ["neutral", `Neutral: ${bands.at_risk_below} to under ${bands.healthy_min}`],
          ["healthy", `Healthy: ${bands.healthy_min} and up`],
        ].map(([band, text]) => el("li", {}, el("span", { class: `swatch swatch-${band}` }), text)),
      );
      return el(
        "div",
        {},
        chart,
        key,
        el("p", {
          class: "hint",
          text:
            `${plural(scores.length, "account")} with a score${unscored ? `; ${count(unscored)} without one (no data)` : ""}. ` +
            `Colours and dashed lines: the band edges ${bandsFromConfig ? "of the configuration in force" : "by default (the configuration could not be read)"}; an account's band also allows for hysteresis.`,
        }),
      );
    }

    function renderDistribution() {
      const target = $("#distribution");
      if (!distribution) return;
      const width = Math.max(280, target.clientWidth || 600);
      target.dataset.width = String(target.clientWidth);
      clear(target).append(histogram(distribution.scores, distribution.unscored, width));
      setBusy("#distribution", false);
    }

    async function loadDistribution() {
      const mine = ++distributionSeq;
      setBusy("#distribution", true);
      const scores = [];
      let unscored = 0;
      // Up to 20 pages of 500: enough for the chart's shape without unbounded reads.
      for (let page = 0, offset = 0; page < 20; page += 1, offset += 500) {
        const { data } = await api("GET", `/api/v1/accounts?${query({ ...filters(), limit: 500, offset })}`);
        if (mine !== distributionSeq) return;
        for (const item of data.items) {
          if (item.score === null || item.score === undefined) unscored += 1;
          else scores.push(item.score);
        }
        if (offset + data.items.length >= data.total || !data.items.length) break;
      }
      distribution = { scores, unscored };
      renderDistribution();
    }

    // -- the list

    function renderSortHeaders() {
      for (const th of document.querySelectorAll("#accounts-table th[data-sort]")) {
        const key = th.dataset.sort;
        if (state.sort === key) th.setAttribute("aria-sort", "ascending");
        else if (state.sort === `-${key}`) th.setAttribute("aria-sort", "descending");
        else th.removeAttribute("aria-sort");
      }
    }

    function renewalCell(item) {
      if (!item.renewal_date) return el("td", { class: "renewal muted", text: "—" });
      const days = daysUntil(item.renewal_date);
      return el(
        "td",
        { class: "renewal" },
        el("span", { class: "nowrap", text: fmtDay(item.renewal_date) }),
        el("span", { class: `sub${days < 0 ? " overdue" : days <= 30 ? " soon" : ""}`, text: daysLeftText(days) }),
      );
    }

    function renderList(data) {
      const body = clearRows("#accounts-table tbody", data.items, { columns: 9, empty: "No accounts match." });
      for (const item of data.items) {
        body.append(
          el(
            "tr",
            { "data-account": item.id },
            nameCell(item),
            el("td", {}, bandBadge(shownBand(item))),
            el("td", { class: "num", text: fmtScore(item.score) }),
            el("td", { class: "num" }, trendCell(item.trend_30d)),
            el("td", {}, sparkline(item.sparkline || [], { bands })),
            el("td", { class: "num arr", text: money.full(item.arr) }),
            renewalCell(item),
            el("td", { text: humanise(item.segment) }),
            el("td", { text: ownerText(item) }),
          ),
        );
      }
      $("#accounts-count").textContent = `(${count(data.total)})`;
      showPage(data);
      setBusy("#accounts-table tbody", false);
    }

    async function loadList() {
      const mine = ++listSeq;
      setBusy("#accounts-table tbody", true);
      const answer = api("GET", `/api/v1/accounts?${query(listQuery())}`);
      await portfolioDone; // the currency comes with the portfolio
      const { data } = await answer;
      if (mine === listSeq) renderList(data);
    }

    async function loadPortfolio() {
      const mine = ++portfolioSeq;
      for (const selector of ["#tiles", "#trend", "#band-split", "#movers", "#renewals"]) setBusy(selector, true);
      const { data } = await api("GET", `/api/v1/portfolio?${query(filters())}`);
      if (mine !== portfolioSeq) return;
      portfolio = data;
      money = moneyIn(data.currency || "USD");
      $("#pf-asof").textContent = data.as_of ? `As of ${fmtTime(data.as_of)} · ${data.currency || "USD"}` : "";
      fillFacets(data.facets);
      renderTiles(data);
      renderBands(data);
      renderTrend();
      renderMovers(data.movers);
      renderRenewals(data.renewals);
    }

    /** Everything again after a filter change; only the list after a sort, a page or a search. */
    function reload({ everything = true } = {}) {
      showError("");
      showFilters();
      remember();
      renderSortHeaders();
      const work = [];
      if (everything) {
        portfolioDone = loadPortfolio().catch(failed);
        work.push(portfolioDone, loadDistribution().catch(failed));
      }
      work.push(loadList().catch(failed));
      return Promise.all(work);
    }

    for (const th of document.querySelectorAll("#accounts-table th[data-sort]")) {
      $("button", th).addEventListener("click", () => {
        const key = th.dataset.sort;
        const flip = (sort) => (sort.startsWith("-") ? sort.slice(1) : `-${sort}`);
        state.sort = state.sort === key || state.sort === `-${key}` ? flip(state.sort) : th.dataset.first || key;
        state.offset = 0;
        reload({ everything: false });
      });
    }
    stepPages(state, () => reload({ everything: false }));

    async function start() {
      const [config, preferences] = await Promise.allSettled([api("GET", "/api/v1/config"), api("GET", "/api/v1/me/preferences")]);
      if (config.status === "fulfilled" && config.value.data && config.value.data.config && config.value.data.config.bands) {
        bands = { ...DEFAULT_BANDS, ...config.value.data.config.bands };
        bandsFromConfig = true;
      }
      if (preferences.status === "fulfilled") me = (preferences.value.data && preferences.value.data.owner) || null;
      else if (!(preferences.reason instanceof ApiError && preferences.reason.status === 404)) failed(preferences.reason);
      // A link with "My accounts" for someone who has not said which owner they are: ask, and
      // show everyone's meanwhile.
      const ask = state.owner === ME && !me;
      if (ask) state.owner = "";
      await reload();
      if (ask) askWhoIAm("");
    }
    start();
  }

  window.crmHealth.pages.accounts = initPortfolio;
})();
