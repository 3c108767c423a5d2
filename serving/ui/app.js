// The forecast explorer (served by serving/app.py; no CDN, no build step). One renderer, drawChart, draws
// both views from JSON: the store's /ui/api/forecast and the /v1/forecast response for a pasted CSV.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = { symbols: [], partition: null, defaults: {} };

async function call(url, options) {
  // every error of the app has one body, {message, detail: [{loc, msg, type}]}
  const r = await fetch(url, options);
  let body;
  try {
    body = await r.json();
  } catch (e) {
    body = { message: `HTTP ${r.status} ${r.statusText}`, detail: [] };
  }
  return { ok: r.ok, status: r.status, body };
}

const postJSON = (url, data) =>
  call(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(data) });

function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  return Math.abs(v) >= 1e5 ? v.toExponential(3) : Number(v.toPrecision(digits)).toString();
}

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function levelsOf(forecast) {
  if (forecast.quantile_levels) return [...forecast.quantile_levels].sort((a, b) => a - b);
  return Object.keys(forecast.quantiles).map((k) => parseFloat(k.replace("close_q", "")) / 100).sort((a, b) => a - b);
}

function qkey(forecast, level) {
  // the column whose level is `level` (close_q10, close_q97.5, ...), matched by value
  return Object.keys(forecast.quantiles).find((k) => Math.abs(parseFloat(k.replace("close_q", "")) / 100 - level) < 1e-9);
}

// history: {timestamps, close}; forecast: {timestamps, mean: {close}, quantiles: {close_qNN}, last_close}.
// Bars are equally spaced by index (calendar bars: no weekend gaps); the fan starts at the last close.
function drawChart(container, history, forecast, quantileLevels) {
  const W = 960, H = 340, m = { l: 64, r: 16, t: 14, b: 34 };
  const hx = history.close || [];
  const n = hx.length, p = forecast.timestamps.length;
  const f = { ...forecast, quantile_levels: quantileLevels || forecast.quantile_levels };
  const levels = levelsOf(f);
  const anchor = n ? hx[n - 1] : forecast.last_close;
  const x0 = Math.max(n - 1, 0);
  const xs = (i) => m.l + ((W - m.l - m.r) * i) / Math.max(x0 + p, 1);
  const values = [...hx, anchor, ...forecast.mean.close];
  for (const lv of levels) values.push(...forecast.quantiles[qkey(f, lv)]);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) { hi += 1; lo -= 1; }
  const pad = (hi - lo) * 0.06;
  lo -= pad; hi += pad;
  const ys = (v) => m.t + ((H - m.t - m.b) * (hi - v)) / (hi - lo);
  const path = (pts) => pts.map(([i, v], k) => `${k ? "L" : "M"}${xs(i).toFixed(1)},${ys(v).toFixed(1)}`).join("");
  const fut = (arr) => [[x0, anchor], ...arr.map((v, k) => [x0 + 1 + k, v])];

  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `forecast chart of ${forecast.symbol}` });
  for (let k = 0; k <= 4; k++) {  // y grid and labels
    const v = lo + ((hi - lo) * k) / 4, y = ys(v);
    svg.append(el("line", { class: "axis", x1: m.l, x2: W - m.r, y1: y, y2: y }));
    svg.append(el("text", { x: m.l - 6, y: y + 4, "text-anchor": "end" }, fmt(v, 5)));
  }
  const pairs = levels.map((a, k) => [a, levels[levels.length - 1 - k]]).filter(([a, b]) => a < b);
  pairs.forEach(([a, b], k) => {  // nested bands, the outermost lightest
    const lower = fut(forecast.quantiles[qkey(f, a)]), upper = fut(forecast.quantiles[qkey(f, b)]).reverse();
    const band = el("path", { class: "band", d: path([...lower, ...upper]) + "Z", opacity: (0.14 + 0.14 * k).toFixed(2) });
    band.setAttribute("data-band", `q${fmt(a * 100)}-q${fmt(b * 100)}`);
    svg.append(band);
  });
  if (n) svg.append(el("path", { class: "history", d: path(hx.map((v, i) => [i, v])) }));
  const median = qkey(f, 0.5);
  if (median) svg.append(el("path", { class: "median", d: path(fut(forecast.quantiles[median])) }));
  svg.append(el("path", { class: "mean", d: path(fut(forecast.mean.close)) }));
  svg.append(el("line", { class: "cutoff", x1: xs(x0), x2: xs(x0), y1: m.t, y2: H - m.b }));
  const day = (t) => String(t).replace("T00:00:00", "").replace("T", " ");
  if (n) svg.append(el("text", { x: xs(0), y: H - 12, "text-anchor": "start" }, day(history.timestamps[0])));
  svg.append(el("text", { x: xs(x0 + p), y: H - 12, "text-anchor": "end" }, day(forecast.timestamps[p - 1])));
  if (n) svg.append(el("text", { x: xs(x0) - 4, y: m.t + 28, "text-anchor": "end" }, `last bar ${day(history.timestamps[n - 1])}`));
  const legend = pairs.length ? `bands ${pairs.map(([a, b]) => `q${fmt(a * 100)}–q${fmt(b * 100)}`).join(", ")}` : "";
  svg.append(el("text", { x: m.l + 6, y: m.t + 12 }, `— history  — mean path  - - median  ${legend}`));
  container.replaceChildren(svg);
}

function showPup(node, forecast) {
  node.replaceChildren();
  node.append(`P(up) ${fmt(forecast.p_up, 3)} · P(flat) ${fmt(forecast.p_flat, 3)} · last close ${fmt(forecast.last_close, 6)}`);
  if (forecast.flags && forecast.flags.length) {
    const s = document.createElement("span");
    s.className = "flag";
    s.textContent = ` · warning: ${forecast.flags.join(", ")}`;
    node.append(s);
  }
}

function setMessage(node, text, isError) {
  node.textContent = text || "";
  node.classList.toggle("error", Boolean(isError));
}

// ---------------------------------------------------------------------------------------------- store

async function initStore(settings) {
  const msg = $("store-message");
  if (!settings.store) {
    setMessage(msg, settings.message);
    return;
  }
  $("store-where").textContent = `store: ${settings.store.output_url}` +
    (settings.store.input_url ? ` · history from ${settings.store.input_url}` : "");
  const r = await call("/ui/api/partitions");
  if (!r.ok) return setMessage(msg, r.body.message, true);
  const parts = r.body.partitions;
  if (!parts.length) {
    return setMessage(msg, `The store at ${settings.store.output_url} holds no forecasts yet: run the batch job ` +
      "(kronos-batch or kronos-nightly) with this output.url, then reload.");
  }
  const sel = $("partition");
  for (const p of parts) {
    const opt = document.createElement("option");
    opt.value = JSON.stringify([p.as_of, p.model]);
    opt.textContent = `${p.as_of.replace("T00:00:00", "")} · ${p.model} · ${p.rows} rows`;
    sel.append(opt);
  }
  sel.addEventListener("change", loadSymbols);
  $("symbol-search").addEventListener("input", renderSymbols);
  $("symbol-search").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    const q = e.target.value.trim().toUpperCase();
    const hit = state.symbols.find((s) => s.symbol.toUpperCase() === q) || matches()[0];
    showSymbol(hit ? hit.symbol : e.target.value.trim());
  });
  $("store-controls").hidden = false;
  await loadSymbols();
}

function matches() {
  const q = $("symbol-search").value.trim().toUpperCase();
  return state.symbols.filter((s) => s.symbol.toUpperCase().includes(q));
}

function renderSymbols() {
  const list = $("symbol-list");
  const found = matches();
  list.replaceChildren(...found.slice(0, 40).map((s) => {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.symbol = s.symbol;
    b.textContent = `${s.symbol} · p_up ${fmt(s.p_up, 2)}`;
    b.addEventListener("click", () => showSymbol(s.symbol));
    return b;
  }));
  if (found.length > 40) list.append(`… ${found.length - 40} more: type to narrow`);
  if (!found.length) list.append("no symbol matches");
}

async function loadSymbols() {
  const [asOf, model] = JSON.parse($("partition").value);
  state.partition = { asOf, model };
  $("store-view").hidden = true;
  const r = await call(`/ui/api/symbols?${new URLSearchParams({ as_of: asOf, model })}`);
  if (!r.ok) return setMessage($("store-message"), r.body.message, true);
  setMessage($("store-message"), "");
  state.symbols = r.body.symbols;
  renderSymbols();
}

async function showSymbol(symbol) {
  const { asOf, model } = state.partition;
  const r = await call(`/ui/api/forecast?${new URLSearchParams({ as_of: asOf, model, symbol })}`);
  if (!r.ok) {
    $("store-view").hidden = true;
    return setMessage($("store-message"), r.body.message, true);
  }
  setMessage($("store-message"), "");
  for (const b of $("symbol-list").querySelectorAll("button")) b.classList.toggle("active", b.dataset.symbol === symbol);
  const v = r.body;
  $("store-symbol").textContent = `${v.symbol} · as_of ${v.as_of.replace("T00:00:00", "")} · ${v.model}`;
  showPup($("store-pup"), v.forecast);
  drawChart($("store-chart"), v.history, v.forecast);
  $("store-note").textContent = v.history_note;
  const rows = Object.entries(v.lineage).filter(([, val]) => val !== null && val !== "");
  $("lineage").replaceChildren(...rows.map(([k, val]) => {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td></td>";
    tr.cells[0].textContent = k;
    tr.cells[1].textContent = String(val);
    return tr;
  }));
  renderScorecard(v.scorecard);
  $("store-view").hidden = false;
}

const CARD_COLUMNS = ["cutoffs", "crps", "crps_skill", "coverage", "direction_acc", "mae", "rank_ic"];

function renderScorecard(card) {
  const table = $("scorecard");
  table.replaceChildren();
  if (!card.line) {
    $("scorecard-line").textContent = card.note;
    return;
  }
  const k = card.line.methods.find((r) => r.method === "kronos") || card.line.methods[0];
  $("scorecard-line").textContent = `${k.method} over ${k.cutoffs} matured cutoffs (${k.first_as_of} … ${k.last_as_of}): ` +
    `CRPS ${fmt(k.crps)}, CRPS skill ${fmt(k.crps_skill, 3)} vs the bootstrap random walk, coverage ` +
    `${fmt(k.coverage, 3)} (nominal ${fmt(k.coverage_nominal, 3)}), direction accuracy ${fmt(k.direction_acc, 3)}`;
  const head = document.createElement("tr");
  for (const c of ["method", ...CARD_COLUMNS]) {
    const th = document.createElement("th");
    th.textContent = c;
    head.append(th);
  }
  table.append(head);
  for (const r of card.line.methods) {
    const tr = document.createElement("tr");
    for (const c of ["method", ...CARD_COLUMNS]) {
      const td = document.createElement("td");
      td.textContent = c === "method" ? r[c] : fmt(r[c], 3);
      tr.append(td);
    }
    table.append(tr);
  }
}

// ------------------------------------------------------------------------------------------------ csv

// where a 422 is shown: the field the client sent (loc from /v1/forecast or /ui/api/csv)
function fieldOf(loc) {
  const top = loc[1];
  if (top === "series" || top === "csv") return "csv";
  if (top === "sampling") return loc[2] === "sample_count" ? "sample_count" : "form";
  if (["pred_len", "model", "freq", "symbol"].includes(top)) return top;
  if (top === "calendar" || top === "timezone") return "calendar";
  return "form";
}

const INPUT = { csv: "csv-text", symbol: "csv-symbol", pred_len: "pred_len", sample_count: "sample_count", model: "model", freq: "freq", calendar: "calendar", lookback: "lookback" };

function clearErrors() {
  for (const node of document.querySelectorAll(".field-error")) node.textContent = "";
  for (const node of document.querySelectorAll(".invalid")) node.classList.remove("invalid");
}

function showErrors(body, offset) {
  $("csv-view").hidden = true;  // never leave an older forecast under a form that now says it is wrong
  const detail = body.detail && body.detail.length ? body.detail : [{ loc: [], msg: body.message }];
  for (const d of detail) {
    const field = fieldOf(d.loc || []);
    let text = d.msg;
    if (field === "csv" && offset !== undefined) {
      // rows in /v1/forecast's messages count from the first bar sent (the last `lookback` of the file)
      const m = /(?:at row|at index) (\d+)/.exec(text);
      if (m) text += ` (CSV line ${Number(m[1]) + offset + 2})`;
    }
    const where = d.loc && d.loc.length > 2 && field === "csv" ? ` [${d.loc.slice(1).join(".")}]` : "";
    $(`err-${field}`).textContent = text + where;
    if (INPUT[field]) $(INPUT[field]).classList.add("invalid");
  }
}

const numberOr = (text) => (text.trim() !== "" && !Number.isNaN(Number(text)) ? Number(text) : text);

async function submitCsv(e) {
  e.preventDefault();
  clearErrors();
  $("csv-busy").hidden = false;
  try {
    const symbol = $("csv-symbol").value.trim() || "CSV";
    const parsed = await postJSON("/ui/api/csv", { csv: $("csv-text").value, symbol });
    if (!parsed.ok) return showErrors(parsed.body);
    const lookback = Number($("lookback").value);
    if (!Number.isInteger(lookback) || lookback < 1) {
      $("err-lookback").textContent = "give a whole number of bars ≥ 1";
      return $("lookback").classList.add("invalid");
    }
    const s = parsed.body.series;
    const offset = Math.max(s.timestamps.length - lookback, 0);
    const series = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Array.isArray(v) ? v.slice(offset) : v]));
    const request = {
      model: $("model").value,
      pred_len: numberOr($("pred_len").value),
      sampling: { sample_count: numberOr($("sample_count").value), seed: 0 },
      calendar: $("calendar").value.trim() || state.defaults.calendar,
      freq: $("freq").value.trim() || parsed.body.freq,
      series: [series],
    };
    const r = await postJSON("/v1/forecast", request);
    if (!r.ok) return showErrors(r.body, offset);
    const f = r.body.forecasts[0];
    $("csv-symbol-title").textContent = `${f.symbol} · ${series.timestamps.length} bars sent · pred_len ${r.body.pred_len}`;
    showPup($("csv-pup"), f);
    drawChart($("csv-chart"), series, f, r.body.quantile_levels);
    const id = r.body.model.identity || {};
    $("csv-model-label").textContent = `model ${r.body.model.id}: ${id.label || r.body.model.model} · ` +
      `${r.body.sampling.sample_count} paths, seed ${r.body.sampling.seed}`;
    $("csv-view").hidden = false;
  } finally {
    $("csv-busy").hidden = true;
  }
}

async function initCsv(settings) {
  const d = settings.defaults;
  state.defaults = d;
  $("pred_len").value = d.pred_len;
  $("sample_count").value = d.sample_count;
  $("lookback").value = d.lookback;
  $("calendar").value = d.calendar;
  const r = await call("/v1/models");
  if (r.ok) {
    for (const m of r.body.models) {
      const opt = document.createElement("option");
      opt.value = m.id;
      opt.textContent = `${m.id} (${m.description || m.model})`;
      $("model").append(opt);
    }
    $("model").value = r.body.default;
  }
  $("csv-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    $("csv-text").value = await file.text();
    if (["", "CSV"].includes($("csv-symbol").value.trim())) $("csv-symbol").value = file.name.replace(/\.[^.]*$/, "");
  });
  $("csv-form").addEventListener("submit", submitCsv);
}

async function main() {
  const r = await call("/ui/api/settings");
  if (!r.ok) return setMessage($("store-message"), r.body.message, true);
  await Promise.all([initStore(r.body), initCsv(r.body)]);
}

main();
