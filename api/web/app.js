// The offices' dashboard (看板): one ES module, no build step, no request to any other
// origin. Every view is a URL (path + query, never the token); links are real <a href>s
// that the page follows itself when it can. Text from the data (unit names, ids) only
// ever becomes text nodes or canvas text: never HTML.
//
// Every KPI figure carries its exact question in data-* attributes (data-kpi,
// data-value as the API returned it, data-from, data-to, data-granularity, data-level,
// data-area), so that a test, or anyone, can ask /v1/kpis the same question.

const echarts = window.echarts;

// ---------------------------------------------------------------- words

const WORDS = {
  zh: {
    brand: "新时代文明实践 · 数据看板",
    overview: "总览", trends: "趋势", rank: "排名", stations: "站点", volunteers: "志愿者",
    exports: "导出", sql: "查询", quality: "数据质量", wall: "大屏", print: "打印",
    logout: "退出", login: "登录", token: "访问令牌", loginHint: "请输入管理员发放的访问令牌。",
    badToken: "令牌无效", period: "周期", area: "区域", kpi: "指标", granularity: "粒度",
    level: "层级", from: "从", to: "至", city: "全市", district: "区县", street: "街道",
    unit: "站点", day: "日", week: "周", month: "月", quarter: "季", year: "年", total: "合计",
    mom: "环比", yoy: "同比", target: "目标", smallBase: "基数过小", noData: "暂无数据",
    noDataYet: "该周期尚无数据（数据截至 {d}）", dataThrough: "数据截至", lastCommit: "最近入湖",
    downloadXlsx: "下载 XLSX", downloadCsv: "下载 CSV", downloadPng: "下载图片",
    snapshot: "数据快照", catalog: "指标口径",
    table: "数据表", value: "数值", rankCol: "排名", sleeping: "沉睡站点（近30天无活动）",
    noService: "无服务记录", activities30: "近30天活动", hours30: "近30天服务时长（小时）",
    all: "全部", back: "返回", stars: "星级志愿者", ranking: "时尚达人（服务时长）",
    volunteer: "志愿者编号", hours: "小时", star: "星", run: "运行", runs: "已运行",
    files: "文件", schedule: "计划", noExports: "没有可见的导出任务。", runExport: "立即运行",
    sqlHint: "只读 SQL（SELECT / WITH / EXPLAIN），仅限本辖区数据。", execute: "执行",
    rows: "行", check: "检查项", count: "数量", examples: "示例", events: "事件数",
    ingest: "入湖统计", stored: "已存储", duplicates: "重复", rejected: "拒收",
    language: "English", chooseAreas: "选择区域", drill: "点击柱条下钻",
    changeVs: "较上期", loading: "加载中…", scope: "辖区",
  },
  en: {
    brand: "Civilization Practice · Dashboard",
    overview: "Overview", trends: "Trends", rank: "Rank", stations: "Stations",
    volunteers: "Volunteers", exports: "Exports", sql: "SQL", quality: "Quality",
    wall: "Wall", print: "Print", logout: "Log out", login: "Log in", token: "Access token",
    loginHint: "Enter the access token your administrator gave you.", badToken: "Unknown token",
    period: "Period", area: "Area", kpi: "KPI", granularity: "Granularity", level: "Level",
    from: "From", to: "To", city: "City", district: "District", street: "Street",
    unit: "Station", day: "Day", week: "Week", month: "Month", quarter: "Quarter",
    year: "Year", total: "Total", mom: "MoM", yoy: "YoY", target: "Target",
    smallBase: "base too small", noData: "No data", noDataYet: "No data yet for this period (data through {d})",
    dataThrough: "Data through", lastCommit: "Last commit", downloadXlsx: "Download XLSX",
    downloadCsv: "Download CSV", downloadPng: "Download PNG", table: "Data table",
    snapshot: "Snapshot", catalog: "KPI catalog",
    value: "Value", rankCol: "Rank", sleeping: "Sleeping stations (no activity in 30 days)",
    noService: "No service records", activities30: "Activities, last 30 days",
    hours30: "Service hours, last 30 days", all: "All", back: "Back", stars: "Star volunteers",
    ranking: "Top volunteers by hours", volunteer: "Volunteer", hours: "hours", star: "star",
    run: "Run", runs: "Runs", files: "Files", schedule: "Schedule", noExports: "No export visible to you.",
    runExport: "Run now", sqlHint: "Read-only SQL (SELECT / WITH / EXPLAIN) over your scope's data.",
    execute: "Run", rows: "rows", check: "Check", count: "Count", examples: "Examples",
    events: "Events", ingest: "Ingest counts", stored: "Stored", duplicates: "Duplicates",
    rejected: "Rejected", language: "中文", chooseAreas: "Areas", drill: "Click a bar to drill down",
    changeVs: "vs previous", loading: "Loading…", scope: "Scope",
  },
};

const HEADLINE = [
  "activities_held", "participant_visits", "service_hours", "volunteer_registration_rate",
  "participation_rate", "active_station_rate", "orders_placed", "order_completion_rate",
];
const LEVELS = ["city", "district", "street", "unit"];
const GRANULARITIES = ["day", "week", "month", "quarter", "year"];

const state = { me: null, catalog: [], units: null, fresh: null, charts: [], stream: null };

function lang() {
  const asked = new URLSearchParams(location.search).get("lang");
  if (asked === "en" || asked === "zh") return asked;
  return localStorage.getItem("wenming.lang") === "en" ? "en" : "zh";
}
function w(key, vars = {}) {
  let text = WORDS[lang()][key] ?? key;
  for (const [k, v] of Object.entries(vars)) text = text.replace(`{${k}}`, v);
  return text;
}
function info(kpi) {
  return state.catalog.find((k) => k.name === kpi) ?? { name: kpi, title_zh: kpi, title_en: kpi, unit: "", shape: "count" };
}
function title(kpi) {
  const i = info(kpi);
  return lang() === "en" ? i.title_en : i.title_zh;
}

// ---------------------------------------------------------------- DOM

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const main = () => document.getElementById("view");

/// A link to a view of this page, keeping the language.
function href(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  if (lang() === "en") q.set("lang", "en");
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}
function param(name, fallback = "") {
  return new URLSearchParams(location.search).get(name) ?? fallback;
}

// ---------------------------------------------------------------- numbers

function isRatio(kpi) { return info(kpi).unit === "ratio"; }
function isHours(kpi) { return info(kpi).unit === "hours"; }
/// A figure for people: rates as percent to 0.1, hours to 0.1, counts whole.
function fmt(kpi, v) {
  if (v === null || v === undefined) return "—";
  const n = Number(v);
  const locale = lang() === "en" ? "en-US" : "zh-CN";
  if (isRatio(kpi)) return (n * 100).toLocaleString(locale, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) + "%";
  if (isHours(kpi) || !Number.isInteger(n)) return n.toLocaleString(locale, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  return n.toLocaleString(locale);
}
function unitWord(kpi) {
  const u = info(kpi).unit;
  const zh = { activities: "场", visits: "人次", people: "人", hours: "小时", orders: "单", minutes: "分钟", score: "分", volunteers: "人" };
  if (u === "ratio") return "";
  return lang() === "en" ? u : zh[u] ?? u;
}
/// A change as an arrow, a percent and a colour; a near-empty base is said, not shown.
function change(c) {
  if (!c || c.change === null || c.change === undefined) return el("span", { class: "flat", text: "—" });
  if (c.small_base) return el("span", { class: "smallbase", text: w("smallBase") });
  const pct = Math.abs(c.change * 100).toFixed(1);
  if (c.change > 0) return el("span", { class: "up", text: `▲ ${pct}%` });
  if (c.change < 0) return el("span", { class: "down", text: `▼ ${pct}%` });
  return el("span", { class: "flat", text: "— 0.0%" });
}

function monthOf(date) { return date ? date.slice(0, 7) : null; }
function monthRange(ym) {
  const [y, m] = ym.split("-").map(Number);
  const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return [`${ym}-01`, `${ym}-${String(last).padStart(2, "0")}`];
}
function addDays(date, n) {
  const d = new Date(date + "T00:00:00Z");
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

// ---------------------------------------------------------------- API

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { "x-wenming": "page", ...(options.headers ?? {}) };
  if (options.json !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(path, {
    method: options.method ?? "GET",
    credentials: "same-origin",
    headers,
    body: options.json !== undefined ? JSON.stringify(options.json) : options.body,
  });
  if (resp.status === 401 && !options.quiet401) throw new Unauthorized();
  const type = resp.headers.get("content-type") ?? "";
  const body = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const e = new Error(body?.detail ?? `${resp.status}`);
    e.status = resp.status;
    throw e;
  }
  return body;
}

function kpiUrl(kpi, q, extra = {}) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...q, ...extra })) if (v !== null && v !== undefined && v !== "") p.set(k, v);
  return `/v1/kpis/${kpi}?${p}`;
}

// ---------------------------------------------------------------- areas

/// The caller's unit tree: names of districts, streets and stations in scope.
async function units() {
  if (!state.units) state.units = await api("/v1/units");
  return state.units;
}
function areaName(code) {
  if (!code || code === "city") return w("city");
  const names = state.units?.areas ?? {};
  return names[code] ?? code;
}
/// The level an area code is at.
function levelOf(area) {
  if (!area) return "city";
  if (/^\d{6}$/.test(area)) return "district";
  if (/^\d{9}$/.test(area)) return "street";
  return "unit";
}
function levelBelow(level) {
  return LEVELS[Math.min(LEVELS.indexOf(level) + 1, LEVELS.length - 1)];
}
/// The scope's own top: a district token starts at its district.
function scopeArea() {
  const s = state.me?.scope ?? "city";
  if (s === "city") return "";
  return s.split(":")[1];
}

// ---------------------------------------------------------------- charts

function chart(container, option) {
  const c = echarts.init(container, lang() === "en" ? null : null, { renderer: "canvas" });
  // Canvas tooltips: names from the data are drawn, never parsed as HTML, and no
  // inline style is needed (the page's CSP allows none).
  option.tooltip = { renderMode: "richText", ...(option.tooltip ?? {}) };
  option.animation = false;
  c.setOption(option);
  state.charts.push(c);
  return c;
}
window.addEventListener("resize", () => state.charts.forEach((c) => c.resize()));

function pngButton(c, name) {
  return el("button", {
    class: "plain", type: "button", text: w("downloadPng"),
    onclick: () => {
      const a = el("a", { href: c.getDataURL({ type: "png", pixelRatio: 2, backgroundColor: "#fff" }), download: `${name}.png` });
      a.click();
    },
  });
}
/// Download links of an answer, pinned to the snapshot it was computed from (the file
/// holds the figures on screen even after new data lands), and where those came from.
function downloads(kpi, q, a) {
  const snapshot = a?.lineage?.snapshot;
  const pinned = snapshot ? { snapshot } : {};
  return el("span", { class: "downloads" },
    el("a", { class: "plain", href: kpiUrl(kpi, q, { format: "xlsx", ...pinned }), download: true, text: w("downloadXlsx") }), " ",
    el("a", { class: "plain", href: kpiUrl(kpi, q, { format: "csv", ...pinned }), download: true, text: w("downloadCsv") }),
    snapshot ? lineageNote(a.lineage) : null);
}

/// "Snapshot s1.…": the versions an answer was computed from; the tooltip lists each
/// table's version and commit time (docs/api.md, "Reproducing a reported number").
function lineageNote(l) {
  const tables = Object.entries(l.tables).map(([t, v]) => `${t} v${v.version} · ${v.committed_at}`);
  return el("span", {
    class: "lineage", "data-snapshot": l.snapshot,
    title: [`${w("snapshot")} ${l.snapshot}`, `${w("catalog")} ${l.kpi_catalog} · ${l.tz}`, ...tables].join("\n"),
    text: ` ${w("snapshot")} ${l.snapshot}`,
  });
}

/// The figure of a KPI row as an element that carries its question.
function figure(tag, kpi, q, row, text) {
  return el(tag, {
    class: tag === "td" ? "num figure" : "figure",
    "data-kpi": kpi,
    "data-value": row.value === null ? "null" : String(row.value),
    "data-from": q.from, "data-to": q.to,
    "data-granularity": q.granularity, "data-level": q.level,
    "data-area": q.area ?? "",
    "data-period": row.period, "data-row-area": row.area,
    text,
  });
}

/// A KPI answer as a table: one figure per row, each with its question.
function answerTable(kpi, q, rows) {
  return el("details", {},
    el("summary", { text: w("table") }),
    el("div", { class: "tablewrap" },
      el("table", { class: "data" },
        el("thead", {}, el("tr", {},
          el("th", { text: w("period") }), el("th", { text: w("area") }), el("th", { class: "num", text: title(kpi) }))),
        el("tbody", {}, rows.map((r) => el("tr", {},
          el("td", { text: r.period }), el("td", { text: r.area_name ?? r.area }),
          figure("td", kpi, q, r, fmt(kpi, r.value))))))));
}

// ---------------------------------------------------------------- freshness

function freshLine() {
  const f = state.fresh;
  if (!f) return el("span", { class: "fresh" });
  const at = (s) => (s ? new Date(s).toLocaleString(lang() === "en" ? "en-US" : "zh-CN", { hour12: false }) : "—");
  return el("span", { class: "fresh", id: "fresh" }, el("span", { class: "dot" }),
    `${w("dataThrough")} ${at(f.data_through)} · ${w("lastCommit")} ${at(f.last_commit_at)}`);
}

/// Follows the lake's commits (server-sent events) and redraws the view when it moves.
function follow() {
  if (state.stream) return;
  state.stream = new EventSource("/v1/freshness/stream");
  state.stream.addEventListener("lake", (e) => {
    const f = JSON.parse(e.data);
    const moved = state.fresh && state.fresh.snapshot !== f.snapshot;
    state.fresh = f;
    const line = document.getElementById("fresh");
    if (line) line.replaceWith(freshLine());
    if (moved && document.body.dataset.live === "yes") render();
  });
  state.stream.onerror = () => {};
}
// A page kept in the back-forward cache would keep its stream's connection open, and a
// browser opens only six to one server: close it on leaving, open it again on return.
window.addEventListener("pagehide", () => {
  state.stream?.close();
  state.stream = null;
});
window.addEventListener("pageshow", (e) => {
  if (e.persisted && state.me) follow();
});

// ---------------------------------------------------------------- views

const VIEWS = {
  "/": overview, "/overview": overview, "/trends": trends, "/rank": rank,
  "/stations": stations, "/volunteers": volunteers, "/exports": exports, "/sql": sqlView,
  "/quality": quality, "/wall": wall, "/print": printView,
};

function nav() {
  const items = ["overview", "trends", "rank", "stations", "volunteers", "exports"];
  if (state.me?.can?.sql) items.push("sql");
  items.push("quality", "wall", "print");
  const here = location.pathname === "/" ? "/overview" : location.pathname;
  return el("header", { class: "top" },
    el("span", { class: "brand", text: w("brand") }),
    el("nav", {}, items.map((v) => el("a", { href: href(`/${v}`), class: here.startsWith(`/${v}`) ? "active" : null, text: w(v) }))),
    el("span", { class: "who" },
      el("span", { text: `${state.me.name} · ${areaName(scopeArea()) }` }),
      el("a", { href: switchLang(), id: "lang", text: w("language"), onclick: () => localStorage.setItem("wenming.lang", lang() === "en" ? "zh" : "en") }),
      el("button", { type: "button", id: "logout", text: w("logout"), onclick: logout })));
}
function switchLang() {
  const p = new URLSearchParams(location.search);
  p.set("lang", lang() === "en" ? "zh" : "en");
  return `${location.pathname}?${p}`;
}

async function logout() {
  await api("/v1/session", { method: "DELETE", quiet401: true }).catch(() => {});
  state.me = null;
  go("/login");
}

function periodPicker(period, onChange) {
  return el("label", {}, w("period"),
    el("input", { type: "month", value: period, name: "period", onchange: (e) => onChange(e.target.value) }));
}
function areaPicker(area, onChange, { levels = ["district", "street"] } = {}) {
  const u = state.units;
  const options = [el("option", { value: scopeArea(), text: areaName(scopeArea()) })];
  for (const [code, name] of Object.entries(u?.areas ?? {})) {
    if (code === scopeArea() || !levels.includes(levelOf(code))) continue;
    options.push(el("option", { value: code, text: `${levelOf(code) === "street" ? "· " : ""}${name}` }));
  }
  const s = el("select", { name: "area", onchange: (e) => onChange(e.target.value) }, options);
  s.value = area;
  return el("label", {}, w("area"), s);
}
function kpiPicker(kpi, onChange, kpis = state.catalog.map((k) => k.name)) {
  const s = el("select", { name: "kpi", onchange: (e) => onChange(e.target.value) },
    kpis.map((k) => el("option", { value: k, text: title(k) })));
  s.value = kpi;
  return el("label", {}, w("kpi"), s);
}
function select(name, value, values, onChange) {
  const s = el("select", { name, onchange: (e) => onChange(e.target.value) },
    values.map((v) => el("option", { value: v, text: w(v) })));
  s.value = value;
  return el("label", {}, w(name), s);
}
function nodata(message) { return el("p", { class: "nodata", text: message }); }
function failure(e) { return el("p", { class: "error", text: e.message }); }

function latestMonth() {
  return monthOf(state.fresh?.data_through) ?? new Date().toISOString().slice(0, 7);
}
/// Whether a range starts after the lake's last event: "no data yet", not zeros.
function beyondData(from) {
  return state.fresh?.data_through && from > state.fresh.data_through.slice(0, 10);
}

// Overview (总览): the month's headline KPIs as cards.
async function overview() {
  document.body.dataset.live = "yes";
  const period = param("period", latestMonth());
  const area = param("area", scopeArea());
  const go2 = (p) => go(href("/overview", { period: p.period ?? period, area: p.area ?? area }));
  const view = main();
  view.replaceChildren(
    el("div", { class: "toolbar" },
      el("h1", { text: `${w("overview")} · ${areaName(area)} · ${period}` }),
      el("span", { class: "controls" }, periodPicker(period, (p) => go2({ period: p })), " ",
        areaPicker(area, (a) => go2({ area: a }))),
      freshLine()),
    el("p", { class: "note", text: w("loading") }));
  const o = await api(`/v1/overview?period=${period}${area ? `&area=${area}` : ""}`);
  const q = { from: o.from, to: o.to, granularity: "month", level: "city", area };
  const cards = el("div", { class: "cards", id: "cards" }, o.cards.map((c) => card(c, q)));
  const note = beyondData(o.from) ? nodata(w("noDataYet", { d: o.data_through?.slice(0, 10) ?? "—" })) : "";
  const charts = el("div", { class: "grid2" });
  view.replaceChildren(view.firstChild, note, cards, charts);
  await overviewCharts(charts, period, area);
}

function card(c, q) {
  const i = info(c.kpi);
  const row = { value: c.value, period: q.from, area: q.area || "city" };
  const target = c.target ?? i.target;
  return el("div", { class: "card", "data-card": c.kpi },
    el("div", { class: "title", text: title(c.kpi) }),
    el("div", { class: "value" }, figure("span", c.kpi, q, row, fmt(c.kpi, c.value)), el("span", { class: "unit", text: unitWord(c.kpi) })),
    el("div", { class: "changes" },
      el("span", {}, `${w("mom")} `, change(c.mom)),
      el("span", {}, `${w("yoy")} `, change(c.yoy))),
    target ? el("div", { class: "target" }, `${w("target")} ${fmt(c.kpi, target)}`, progress((c.value ?? 0) / target)) : null);
}

/// A bar filled to `share` (of a target). Its width is set through the CSSOM: the page's
/// CSP allows no inline style attribute.
function progress(share) {
  const fill = el("span");
  fill.style.width = `${Math.max(0, Math.min(100, share * 100)).toFixed(0)}%`;
  return el("div", { class: "bar" }, fill);
}

/// The year so far of two KPIs, month by month, drawn into `box` (already on the page:
/// a chart measures its container when it is made).
async function overviewCharts(box, period, area) {
  const [from, to] = [`${period.slice(0, 4)}-01-01`, monthRange(period)[1]];
  const q = { from, to, granularity: "month", level: "city", area };
  for (const kpi of ["service_hours", "participant_visits"]) {
    const a = await api(kpiUrl(kpi, q));
    const holder = el("div", { class: "chart" });
    const panel = el("div", { class: "panel" },
      el("div", { class: "head" }, el("h2", { text: `${title(kpi)} · ${period.slice(0, 4)}` }), downloads(kpi, q, a)),
      holder, answerTable(kpi, q, a.rows));
    box.append(panel);
    const c = chart(holder, {
      grid: { left: 60, right: 20, top: 20, bottom: 30 },
      xAxis: { type: "category", data: a.rows.map((r) => r.period.slice(0, 7)) },
      yAxis: { type: "value", axisLabel: { formatter: (v) => fmt(kpi, v) } },
      series: [{ type: "bar", data: a.rows.map((r) => r.value), itemStyle: { color: "#b8151c" } }],
    });
    panel.querySelector(".head").append(" ", pngButton(c, kpi));
  }
}

// Trends (趋势): a KPI over time, one line per chosen area.
async function trends() {
  document.body.dataset.live = "yes";
  const kpi = param("kpi", "service_hours");
  const granularity = param("granularity", "month");
  const to = param("to", monthRange(latestMonth())[1]);
  const from = param("from", `${to.slice(0, 4)}-01-01`);
  const level = param("level", levelBelow(levelOf(scopeArea())));
  const area = param("area", scopeArea());
  const set = (p) => go(href("/trends", { kpi, granularity, from, to, level, area, ...p }));
  const view = main();
  view.replaceChildren(el("div", { class: "toolbar" },
    el("h1", { text: `${w("trends")} · ${title(kpi)}` }),
    el("span", { class: "controls" },
      kpiPicker(kpi, (k) => set({ kpi: k })), " ",
      select("granularity", granularity, GRANULARITIES, (g) => set({ granularity: g })), " ",
      select("level", level, LEVELS.slice(LEVELS.indexOf(levelOf(scopeArea()))), (l) => set({ level: l })), " ",
      areaPicker(area, (a) => set({ area: a })), " ",
      el("label", {}, w("from"), el("input", { type: "date", name: "from", value: from, onchange: (e) => set({ from: e.target.value }) })),
      el("label", {}, w("to"), el("input", { type: "date", name: "to", value: to, onchange: (e) => set({ to: e.target.value }) }))),
    freshLine()));
  const q = { from, to, granularity, level, area };
  try {
    const [a, mom, yoy] = await Promise.all([
      api(kpiUrl(kpi, q)), api(kpiUrl(kpi, q, { compare: "mom" })), api(kpiUrl(kpi, q, { compare: "yoy" })),
    ]);
    const periods = [...new Set(a.rows.map((r) => r.period))];
    const areas = [...new Set(a.rows.map((r) => r.area))].slice(0, 30);
    const key = (r) => `${r.period}|${r.area}`;
    const changes = new Map(mom.rows.map((r) => [key(r), { mom: r }]));
    for (const r of yoy.rows) changes.set(key(r), { ...(changes.get(key(r)) ?? {}), yoy: r });
    const names = new Map(a.rows.map((r) => [r.area, r.area_name ?? r.area]));
    const panel = el("div", { class: "panel" },
      el("div", { class: "head" }, el("h2", { text: `${title(kpi)} (${unitWord(kpi) || "%"})` }), downloads(kpi, q, a)));
    const holder = el("div", { class: "chart" });
    panel.append(beyondData(from) ? nodata(w("noDataYet", { d: a.data_through?.slice(0, 10) ?? "—" })) : holder, answerTable(kpi, q, a.rows));
    view.append(panel);
    const pct = (r) => (r?.change === null || r?.change === undefined ? "—" : r.small_base ? w("smallBase") : `${(r.change * 100).toFixed(1)}%`);
    const c = chart(holder, {
      legend: { type: "scroll", top: 0 },
      grid: { left: 60, right: 20, top: 40, bottom: 40 },
      tooltip: {
        trigger: "item",
        formatter: (p) => {
          const ch = changes.get(`${periods[p.dataIndex]}|${areas[p.seriesIndex]}`) ?? {};
          return `${p.seriesName} ${periods[p.dataIndex]}\n${fmt(kpi, p.value)}\n${w("mom")} ${pct(ch.mom)} · ${w("yoy")} ${pct(ch.yoy)}`;
        },
      },
      xAxis: { type: "category", data: periods },
      yAxis: { type: "value", axisLabel: { formatter: (v) => fmt(kpi, v) } },
      series: areas.map((ar) => ({
        name: names.get(ar), type: "line", symbolSize: 6,
        data: periods.map((p) => a.rows.find((r) => r.period === p && r.area === ar)?.value ?? null),
      })),
    });
    panel.querySelector(".head").append(" ", pngButton(c, `${kpi}-trend`));
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    view.append(failure(e));
  }
}

// Compare and rank (排名): every area of a level on one KPI, with drill-down.
async function rank() {
  document.body.dataset.live = "yes";
  const kpi = param("kpi", "service_hours");
  const period = param("period", latestMonth());
  const area = param("area", scopeArea());
  const level = levelBelow(levelOf(area));
  const set = (p) => go(href("/rank", { kpi, period, area, ...p }));
  const [from, to] = monthRange(period);
  const q = { from, to, granularity: "month", level, area };
  const view = main();
  const crumbs = el("div", { class: "crumbs" });
  const trail = [];
  for (let a = area; a; a = parentArea(a)) {
    trail.unshift(a);
    if (a === scopeArea()) break;
  }
  if (!scopeArea() || trail[0] !== scopeArea()) trail.unshift(scopeArea());
  trail.forEach((a, i) => {
    if (i > 0) crumbs.append("› ");
    crumbs.append(i === trail.length - 1 ? el("span", { text: areaName(a) }) : el("a", { href: href("/rank", { kpi, period, area: a }), text: areaName(a) }));
  });
  view.replaceChildren(el("div", { class: "toolbar" },
    el("h1", { text: `${w("rank")} · ${title(kpi)}` }),
    el("span", { class: "controls" }, kpiPicker(kpi, (k) => set({ kpi: k }), state.catalog.filter((k) => !["star_volunteers", "volunteer_ranking"].includes(k.name)).map((k) => k.name)), " ",
      periodPicker(period, (p) => set({ period: p }))), freshLine()), crumbs);
  const a = await api(kpiUrl(kpi, q));
  const rows = [...a.rows].sort((x, y) => (y.value ?? -1) - (x.value ?? -1));
  const panel = el("div", { class: "panel" },
    el("div", { class: "head" }, el("h2", { text: `${areaName(area)} · ${w(level)} · ${period}` }),
      level !== "unit" ? el("span", { class: "note", text: w("drill") }) : null, downloads(kpi, q, a)));
  const holder = el("div", { class: "chart", style: null });
  const body = el("tbody", {}, rows.map((r, i) => el("tr", {},
    el("td", { class: "num", text: i + 1 }),
    el("td", {}, level === "unit"
      ? el("a", { href: href(`/stations/${encodeURIComponent(r.area)}`), text: r.area_name ?? r.area })
      : el("a", { href: href("/rank", { kpi, period, area: r.area }), "data-drill": r.area, text: r.area_name ?? r.area })),
    figure("td", kpi, q, r, fmt(kpi, r.value)))));
  panel.append(beyondData(from) ? nodata(w("noDataYet", { d: a.data_through?.slice(0, 10) ?? "—" })) : holder,
    el("div", { class: "tablewrap" }, el("table", { class: "data" },
      el("thead", {}, el("tr", {}, el("th", { class: "num", text: w("rankCol") }), el("th", { text: w("area") }), el("th", { class: "num", text: title(kpi) }))), body)));
  view.append(panel);
  const target = info(kpi).target;
  const c = chart(holder, {
    grid: { left: 140, right: 40, top: 10, bottom: 30 },
    yAxis: { type: "category", inverse: true, data: rows.map((r) => r.area_name ?? r.area) },
    xAxis: { type: "value", axisLabel: { formatter: (v) => fmt(kpi, v) } },
    series: [{
      type: "bar", data: rows.map((r) => r.value), itemStyle: { color: "#b8151c" },
      markLine: target ? { symbol: "none", data: [{ xAxis: target, name: w("target") }], label: { formatter: `${w("target")} ${fmt(kpi, target)}` } } : undefined,
    }],
  });
  holder.style.height = `${Math.max(240, rows.length * 26 + 60)}px`;
  c.resize();
  c.on("click", (p) => {
    const r = rows[p.dataIndex];
    if (level === "unit") go(href(`/stations/${encodeURIComponent(r.area)}`));
    else go(href("/rank", { kpi, period, area: r.area }));
  });
  panel.querySelector(".head").append(" ", pngButton(c, `${kpi}-rank`));
}
function parentArea(a) {
  if (levelOf(a) === "street") return a.slice(0, 6);
  if (levelOf(a) === "unit") {
    const u = state.units?.units?.find((x) => x.unit_id === a);
    return u ? u.street_code : "";
  }
  return "";
}

// Stations (站点): the scope's stations, sleeping ones flagged; a station's own page.
async function stations() {
  document.body.dataset.live = "yes";
  const id = decodeURIComponent(location.pathname.slice("/stations/".length));
  if (location.pathname.startsWith("/stations/") && id) return station(id);
  const area = param("area", scopeArea());
  const view = main();
  const to = state.fresh?.data_through?.slice(0, 10) ?? new Date().toISOString().slice(0, 10);
  const from = addDays(to, -29);
  view.replaceChildren(el("div", { class: "toolbar" },
    el("h1", { text: `${w("stations")} · ${areaName(area)}` }),
    el("span", { class: "controls" }, areaPicker(area, (a) => go(href("/stations", { area: a })))), freshLine()));
  const q = { from, to, granularity: "total", level: "unit", area };
  const [acts, hours] = await Promise.all([api(kpiUrl("activities_held", q)), api(kpiUrl("service_hours", q))]);
  const h = new Map(hours.rows.map((r) => [r.area, r]));
  const isStation = new Set((state.units?.units ?? []).filter((u) => u.level === "station").map((u) => u.unit_id));
  const rows = acts.rows.filter((r) => isStation.has(r.area));
  const sleeping = rows.filter((r) => (r.value ?? 0) === 0);
  view.append(el("div", { class: "panel" },
    el("div", { class: "head" }, el("h2", { text: `${w("sleeping")}: ${sleeping.length} / ${rows.length}` }), el("span", { class: "note", text: `${from} – ${to}` })),
    el("div", { class: "tablewrap" }, el("table", { class: "data", id: "stations" },
      el("thead", {}, el("tr", {}, el("th", { text: w("unit") }), el("th", { class: "num", text: w("activities30") }), el("th", { class: "num", text: w("hours30") }), el("th", {}))),
      el("tbody", {}, rows.map((r) => {
        const hr = h.get(r.area) ?? { value: 0, period: r.period, area: r.area };
        const flags = [];
        if ((r.value ?? 0) === 0) flags.push(w("sleeping").split("（")[0].split(" (")[0]);
        if ((hr.value ?? 0) === 0) flags.push(w("noService"));
        return el("tr", { class: flags.length ? "flag" : null, "data-station": r.area, "data-sleeping": (r.value ?? 0) === 0 ? "yes" : "no" },
          el("td", {}, el("a", { href: href(`/stations/${encodeURIComponent(r.area)}`), text: r.area_name ?? r.area })),
          figure("td", "activities_held", q, r, fmt("activities_held", r.value)),
          figure("td", "service_hours", q, hr, fmt("service_hours", hr.value)),
          el("td", { text: flags.join(" · ") }));
      }))))));
}

async function station(id) {
  const view = main();
  const u = (state.units?.units ?? []).find((x) => x.unit_id === id);
  view.replaceChildren(el("div", { class: "toolbar" },
    el("h1", { text: `${w("unit")} · ${u?.name ?? id}` }),
    el("a", { class: "plain", href: href("/stations"), text: w("back") }), freshLine()));
  const to = monthRange(latestMonth())[1];
  const q = { from: `${to.slice(0, 4)}-01-01`, to, granularity: "month", level: "unit", area: id };
  const grid = el("div", { class: "grid2" });
  view.append(grid);
  for (const kpi of ["activities_held", "participant_visits", "service_hours", "orders_placed"]) {
    let a;
    try {
      a = await api(kpiUrl(kpi, q));
    } catch (e) {
      if (e instanceof Unauthorized) throw e;
      grid.append(failure(e));
      return;
    }
    const holder = el("div", { class: "chart" });
    const panel = el("div", { class: "panel" }, el("div", { class: "head" }, el("h2", { text: title(kpi) }), downloads(kpi, q, a)), holder, answerTable(kpi, q, a.rows));
    grid.append(panel);
    const c = chart(holder, {
      grid: { left: 50, right: 20, top: 20, bottom: 30 },
      xAxis: { type: "category", data: a.rows.map((r) => r.period.slice(0, 7)) },
      yAxis: { type: "value" },
      series: [{ type: "line", data: a.rows.map((r) => r.value) }],
    });
    panel.querySelector(".head").append(" ", pngButton(c, `${id}-${kpi}`));
  }
}

// Volunteers (志愿者): star levels and the top volunteers by hours.
async function volunteers() {
  document.body.dataset.live = "yes";
  const period = param("period", latestMonth());
  const area = param("area", scopeArea());
  const [from, to] = monthRange(period);
  const view = main();
  view.replaceChildren(el("div", { class: "toolbar" },
    el("h1", { text: `${w("volunteers")} · ${areaName(area)} · ${period}` }),
    el("span", { class: "controls" }, periodPicker(period, (p) => go(href("/volunteers", { period: p, area }))), " ",
      areaPicker(area, (a) => go(href("/volunteers", { period, area: a })))), freshLine()));
  const qs = { from, to, granularity: "month", level: "city", area };
  const [stars, top] = await Promise.all([api(kpiUrl("star_volunteers", qs)), api(kpiUrl("volunteer_ranking", qs, { top: 20 }))]);
  const holder = el("div", { class: "chart" });
  const left = el("div", { class: "panel" }, el("div", { class: "head" }, el("h2", { text: w("stars") }), downloads("star_volunteers", qs, stars)), holder,
    el("table", { class: "data" }, el("tbody", {}, stars.rows.map((r) => el("tr", {}, el("td", { text: `${r.star} ${w("star")}` }), figure("td", "star_volunteers", qs, r, fmt("star_volunteers", r.value)))))));
  const right = el("div", { class: "panel" }, el("div", { class: "head" }, el("h2", { text: w("ranking") }), downloads("volunteer_ranking", { ...qs, top: 20 }, top)),
    el("table", { class: "data" },
      el("thead", {}, el("tr", {}, el("th", { class: "num", text: w("rankCol") }), el("th", { text: w("volunteer") }), el("th", { class: "num", text: w("hours") }))),
      el("tbody", {}, top.rows.map((r) => el("tr", {}, el("td", { class: "num", text: r.rank }), el("td", { text: r.volunteer_id }), figure("td", "volunteer_ranking", qs, r, fmt("service_hours", r.value)))))));
  view.append(el("div", { class: "grid2" }, left, right));
  const c = chart(holder, {
    grid: { left: 50, right: 20, top: 20, bottom: 30 },
    xAxis: { type: "category", data: stars.rows.map((r) => `${r.star}${lang() === "en" ? "★" : "星"}`) },
    yAxis: { type: "value" },
    series: [{ type: "bar", data: stars.rows.map((r) => r.value), itemStyle: { color: "#d4a017" } }],
  });
  left.querySelector(".head").append(" ", pngButton(c, "stars"));
}

// Exports (导出): what the token may see and run, and the files.
async function exports() {
  document.body.dataset.live = "no";
  const view = main();
  view.replaceChildren(el("h1", { text: w("exports") }));
  const list = await api("/v1/exports");
  if (!list.length) return view.append(el("p", { class: "note", text: w("noExports") }));
  for (const x of list) {
    const panel = el("div", { class: "panel" }, el("div", { class: "head" }, el("h2", { text: `${x.name} · ${x.scope}` }),
      el("span", { class: "note", text: `${w("schedule")} ${x.schedule} (${x.tz}) · ${x.kpis.map(title).join("、")}` })));
    const runs = el("ul", {}, x.runs.map((p) => el("li", {}, `${p}: `, x.formats.map((f) => [el("a", { href: `/v1/exports/${x.name}/files/${p}/${x.name}_${p}.${f}`, download: true, text: f.toUpperCase() }), " "]),
      el("a", { href: `/v1/exports/${x.name}/files/${p}/manifest.json`, text: "manifest" }))));
    panel.append(el("h3", { text: w("runs") }), runs);
    if (state.me?.can?.run_exports) {
      const input = el("input", { type: "text", name: "period", value: latestMonth(), size: 8 });
      const out = el("span", { class: "note" });
      panel.append(el("p", {}, input, " ", el("button", {
        class: "primary", type: "button", text: w("runExport"),
        onclick: async () => {
          out.textContent = w("loading");
          try {
            const m = await api(`/v1/exports/${x.name}/run?period=${encodeURIComponent(input.value)}`, { method: "POST" });
            out.textContent = `${m.period}: ${m.files.map((f) => f.name).join(", ")}`;
          } catch (e) {
            out.textContent = e.message;
          }
        },
      }), " ", out));
    }
    view.append(panel);
  }
}

// SQL (查询), for analysts.
async function sqlView() {
  document.body.dataset.live = "no";
  const view = main();
  const text = el("textarea", { class: "sql", name: "sql", spellcheck: "false" });
  text.value = param("q", "SELECT district_code, count(*) AS stations\nFROM units WHERE level = 'station'\nGROUP BY district_code ORDER BY 1");
  const out = el("div", { id: "result" });
  const run = async (format) => {
    out.replaceChildren(el("p", { class: "note", text: w("loading") }));
    try {
      if (format === "csv") {
        const resp = await fetch("/v1/sql", { method: "POST", credentials: "same-origin", headers: { "content-type": "application/json", accept: "text/csv", "x-wenming": "page" }, body: JSON.stringify({ sql: text.value }) });
        if (!resp.ok) throw new Error((await resp.json()).detail);
        const a = el("a", { href: URL.createObjectURL(await resp.blob()), download: "query.csv" });
        a.click();
        out.replaceChildren();
        return;
      }
      const rows = await api("/v1/sql", { method: "POST", json: { sql: text.value } });
      const cols = rows.length ? Object.keys(rows[0]) : [];
      out.replaceChildren(el("p", { class: "note", text: `${rows.length} ${w("rows")}` }),
        el("div", { class: "tablewrap" }, el("table", { class: "data" },
          el("thead", {}, el("tr", {}, cols.map((c) => el("th", { text: c })))),
          el("tbody", {}, rows.map((r) => el("tr", {}, cols.map((c) => el("td", { text: r[c] === null ? "NULL" : typeof r[c] === "object" ? JSON.stringify(r[c]) : String(r[c]) }))))))));
    } catch (e) {
      if (e instanceof Unauthorized) throw e;
      out.replaceChildren(failure(e));
    }
  };
  view.replaceChildren(el("h1", { text: w("sql") }), el("p", { class: "note", text: w("sqlHint") }), text,
    el("p", {}, el("button", { class: "primary", type: "button", id: "run-sql", text: w("execute"), onclick: () => run("json") }), " ",
      el("button", { class: "plain", type: "button", text: w("downloadCsv"), onclick: () => run("csv") })), out);
}

// Quality (数据质量): the report within scope.
async function quality() {
  document.body.dataset.live = "yes";
  const view = main();
  view.replaceChildren(el("div", { class: "toolbar" }, el("h1", { text: w("quality") }), freshLine()));
  const r = await api("/v1/quality");
  view.append(el("div", { class: "panel" }, el("h2", { text: w("events") }),
    el("table", { class: "data" }, el("tbody", {}, Object.entries(r.events).map(([t, n]) => el("tr", {}, el("td", { text: t }), el("td", { class: "num", text: n.toLocaleString() })))))));
  view.append(el("div", { class: "panel" }, el("h2", { text: w("check") }),
    el("table", { class: "data" },
      el("thead", {}, el("tr", {}, el("th", { text: w("check") }), el("th", { class: "num", text: w("count") }), el("th", { text: w("examples") }))),
      el("tbody", {}, r.checks.map((c) => el("tr", { class: c.count ? "flag" : null }, el("td", { title: c.description, text: c.name }), el("td", { class: "num", text: c.count.toLocaleString() }), el("td", { text: c.examples.join(", ") })))))));
  if (r.ingest) {
    view.append(el("div", { class: "panel" }, el("h2", { text: w("ingest") }),
      el("p", { text: `${w("stored")} ${r.ingest.stored.toLocaleString()} · ${w("duplicates")} ${r.ingest.duplicates.toLocaleString()} · ${w("rejected")} ${r.ingest.rejected.toLocaleString()}` })));
  }
}

// Wall (大屏): full screen, large type, refreshes itself, no controls.
async function wall() {
  document.body.classList.add("wall");
  document.body.dataset.live = "yes";
  const period = param("period", latestMonth());
  const area = param("area", scopeArea());
  const view = main();
  const o = await api(`/v1/overview?period=${period}${area ? `&area=${area}` : ""}`);
  const q = { from: o.from, to: o.to, granularity: "month", level: "city", area };
  const holder = el("div", { class: "chart" });
  view.replaceChildren(el("h1", { text: `${areaName(area)} ${w("brand")} · ${period}` }),
    el("div", { class: "cards" }, o.cards.map((c) => card(c, q))), el("div", { class: "panel" }, holder), freshLine());
  const year = { from: `${period.slice(0, 4)}-01-01`, to: o.to, granularity: "month", level: levelBelow(levelOf(area)), area };
  const a = await api(kpiUrl("service_hours", year));
  const periods = [...new Set(a.rows.map((r) => r.period.slice(0, 7)))];
  const areas = [...new Set(a.rows.map((r) => r.area))].slice(0, 12);
  const names = new Map(a.rows.map((r) => [r.area, r.area_name ?? r.area]));
  chart(holder, {
    textStyle: { color: "#e8eef9", fontSize: 16 },
    legend: { textStyle: { color: "#e8eef9" }, top: 0 },
    grid: { left: 70, right: 30, top: 50, bottom: 40 },
    xAxis: { type: "category", data: periods },
    yAxis: { type: "value", splitLine: { lineStyle: { color: "#1f3b6b" } } },
    series: areas.map((ar) => ({ name: names.get(ar), type: "line", data: periods.map((p) => a.rows.find((r) => r.period.startsWith(p) && r.area === ar)?.value ?? null) })),
  });
  clearTimeout(state.wallTimer);
  state.wallTimer = setTimeout(() => location.pathname === "/wall" && render(), 60000);
}

// Print (打印): the monthly briefing on A4.
async function printView() {
  document.body.classList.add("print");
  document.body.dataset.live = "no";
  const period = param("period", latestMonth());
  const area = param("area", scopeArea());
  const view = main();
  const o = await api(`/v1/overview?period=${period}${area ? `&area=${area}` : ""}`);
  const q = { from: o.from, to: o.to, granularity: "month", level: "city", area };
  view.replaceChildren(el("div", { class: "toolbar" }, el("h1", { text: `${areaName(area)} · ${period} · ${w("brand")}` }),
    el("span", { class: "controls" }, periodPicker(period, (p) => go(href("/print", { period: p, area }))), " ",
      el("button", { class: "primary", type: "button", text: w("print"), onclick: () => window.print() })), freshLine()),
    el("div", { class: "cards" }, o.cards.map((c) => card(c, q))));
  const level = levelBelow(levelOf(area));
  for (const kpi of ["service_hours", "participant_visits", "active_station_rate"]) {
    const qq = { from: o.from, to: o.to, granularity: "month", level, area };
    const a = await api(kpiUrl(kpi, qq));
    const rows = [...a.rows].sort((x, y) => (y.value ?? -1) - (x.value ?? -1)).slice(0, 15);
    const holder = el("div", { class: "chart" });
    view.append(el("div", { class: "panel" }, el("h2", { text: `${title(kpi)} · ${w(level)}` }), holder,
      a.lineage ? el("p", { class: "source" }, lineageNote(a.lineage)) : null,
      el("table", { class: "data" }, el("tbody", {}, rows.map((r) => el("tr", {}, el("td", { text: r.area_name ?? r.area }), figure("td", kpi, qq, r, fmt(kpi, r.value))))))));
    chart(holder, {
      grid: { left: 120, right: 30, top: 10, bottom: 30 },
      yAxis: { type: "category", inverse: true, data: rows.map((r) => r.area_name ?? r.area) },
      xAxis: { type: "value" },
      series: [{ type: "bar", data: rows.map((r) => r.value), itemStyle: { color: "#b8151c" } }],
    });
  }
}

// Login (登录): the token once, in a form; then the view that was asked for.
function login(message) {
  document.body.className = "";
  const input = el("input", { type: "password", name: "token", autocomplete: "current-password", required: true });
  const error = el("p", { class: "error", hidden: !message, text: message ?? "" });
  const form = el("form", {
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        state.me = await api("/v1/session", { method: "POST", json: { token: input.value }, quiet401: true });
        input.value = "";
        const next = sessionStorage.getItem("wenming.next") ?? "/";
        sessionStorage.removeItem("wenming.next");
        go(next === "/login" ? "/" : next);
      } catch (err) {
        error.hidden = false;
        error.textContent = err.status === 401 ? w("badToken") : err.message;
      }
    },
  }, el("label", {}, w("token"), input), el("button", { class: "primary", type: "submit", text: w("login") }), error);
  document.body.replaceChildren(el("div", { class: "login" }, el("h1", { text: w("brand") }), el("p", { class: "note", text: w("loginHint") }), form),
    el("p", { class: "note", style: null }, el("a", { href: switchLang(), text: w("language") })));
}

// ---------------------------------------------------------------- routing

function go(url) {
  history.pushState(null, "", url);
  render();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (!a || a.hasAttribute("download") || a.target || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/v1/")) return;
  e.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener("popstate", render);

async function render() {
  state.charts.forEach((c) => c.dispose());
  state.charts = [];
  document.documentElement.lang = lang() === "en" ? "en" : "zh-CN";
  document.title = w("brand");
  try {
    // A one-time code from `wenming demo`: exchanged at once, and gone from the address.
    const code = new URLSearchParams(location.search).get("code");
    if (code) {
      const p = new URLSearchParams(location.search);
      p.delete("code");
      history.replaceState(null, "", location.pathname + (p.toString() ? `?${p}` : ""));
      state.me = await api("/v1/session", { method: "POST", json: { code }, quiet401: true }).catch(() => null);
    }
    if (location.pathname === "/login") return login();
    if (!state.me) state.me = await api("/v1/session");
    if (!state.me?.authenticated) throw new Unauthorized();
    if (!state.catalog.length) state.catalog = await api("/v1/kpis");
    await units();
    if (!state.fresh) state.fresh = await api("/v1/freshness");
    follow();
    document.body.className = "";
    const view = VIEWS[location.pathname] ?? (location.pathname.startsWith("/stations/") ? stations : overview);
    // The wall screen has no controls at all.
    document.body.replaceChildren(view === wall ? "" : nav(), el("main", { id: "view" }));
    if (view === sqlView && !state.me.can.sql) return go("/overview");
    await view();
  } catch (e) {
    if (e instanceof Unauthorized) {
      state.me = null;
      if (location.pathname !== "/login") sessionStorage.setItem("wenming.next", location.pathname + location.search);
      history.replaceState(null, "", "/login");
      return login();
    }
    const v = document.getElementById("view") ?? document.body;
    v.append(failure(e));
  }
}

render();
