// labkit's attention canvas (attention_canvas.py): one checkpoint's attention arrives once, as bytes; every control
// (layer, head, combine, queries, start, difference, statistic, grid) is sliced and drawn here, in the browser.
//
// Buffers, row-major: attention (layers, heads, queries, keys) and rollout (layers, seq, seq) as bytes, a weight w
// sent as round(255 w) and read as byte / 255; reference and reference_rollout the same (empty without a reference);
// statistics and statistics_change as little-endian float32 (statistics, layers, heads).

const ONE_HEAD = "one head";
const FONT = "11px sans-serif";
const MAP_SIDE = 480; // css px of the main map's cells
const GRID_SIDE = 150; // css px of each head's map in the grid
const STATISTIC_CELL = 30; // css px of one head in the statistics table, at most
const LABEL_GAP = 12; // the least css px between two labels on an axis
const TRAITS = ["attention", "rollout", "reference", "reference_rollout", "statistics", "statistics_change", "shape",
  "tokens", "key_tokens", "cross", "combinations", "statistic_names", "window", "title", "run", "decimals", "layer",
  "head", "combine", "queries", "start", "difference", "statistic", "grid"];

// colour scales: stops from low to high, spread evenly
const BLUES = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];
const BLUE_WHITE_RED = [[5, 48, 97], [67, 147, 195], [247, 247, 247], [214, 96, 77], [103, 0, 31]];
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

const LEVELS = 255; // colours in a scale: odd, so that a diverging scale has its middle colour at 0

function colourTable(stops) {
  const table = new Uint8Array(LEVELS * 3);
  for (let i = 0; i < LEVELS; i++) {
    const x = (i / (LEVELS - 1)) * (stops.length - 1);
    const j = Math.min(Math.floor(x), stops.length - 2);
    const t = x - j;
    for (let c = 0; c < 3; c++) table[3 * i + c] = Math.round(stops[j][c] * (1 - t) + stops[j + 1][c] * t);
  }
  return table;
}

const SCALES = { blues: colourTable(BLUES), diverging: colourTable(BLUE_WHITE_RED), viridis: colourTable(VIRIDIS) };

/** A binary trait (DataView, ArrayBuffer or typed array; missing = empty) as bytes, without copying. */
export function bytesOf(value) {
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return new Uint8Array(0);
}

function floatsOf(value) {
  return new Float32Array(bytesOf(value).slice().buffer); // the copy starts at offset 0: aligned for float32
}

function range(start, end) {
  return Array.from({ length: Math.max(0, end - start) }, (_, i) => start + i);
}

function outOfRange(name, value, size) {
  return `${name} ${value} is out of range: this model has ${size} ${name}s, numbered 0..${size - 1}`;
}

/** (q, k) → the weight of one map of `bytes` (layer `layer`), heads combined as `how`. */
function cellReader(how, bytes, rolled, shape, layer, head) {
  const [, heads, nQueries, nKeys] = shape;
  const plane = nQueries * nKeys;
  const base = layer * heads * plane;
  if (how === ONE_HEAD) return (q, k) => bytes[base + head * plane + q * nKeys + k] / 255;
  if (how === "mean") {
    return (q, k) => {
      let sum = 0;
      for (let h = 0; h < heads; h++) sum += bytes[base + h * plane + q * nKeys + k];
      return sum / heads / 255;
    };
  }
  if (how === "max") {
    return (q, k) => {
      let most = 0;
      for (let h = 0; h < heads; h++) most = Math.max(most, bytes[base + h * plane + q * nKeys + k]);
      return most / 255;
    };
  }
  return (q, k) => rolled[layer * plane + q * nKeys + k] / 255; // rollout
}

/** {rows, keys}: the query and key positions in view (the window over self-attention, everything for cross). */
function windowOf(state) {
  const [, , nQueries, nKeys] = state.shape;
  if (state.cross) return { rows: range(0, nQueries), keys: range(0, nKeys) };
  const rows = range(state.start, Math.min(nQueries, state.start + state.window));
  return { rows, keys: rows };
}

function subtracting(state) {
  return state.difference && bytesOf(state.reference).length > 0;
}

/** The map the controls ask for: {values (queries × keys, row-major), queries, keys, diverging}, or {error}. */
export function mapOf(state) {
  const [layers, heads, nQueries, nKeys] = state.shape;
  const attention = bytesOf(state.attention);
  if (attention.length !== layers * heads * nQueries * nKeys) return { error: "no attention yet" };
  const how = state.combinations[state.combine];
  if (!(state.layer >= 0 && state.layer < layers)) return { error: outOfRange("layer", state.layer, layers) };
  if (how === ONE_HEAD && !(state.head >= 0 && state.head < heads)) {
    return { error: outOfRange("head", state.head, heads) };
  }
  if (how === "rollout" && bytesOf(state.rollout).length === 0) return { error: "no rollout for cross-attention" };
  const { rows, keys } = windowOf(state);
  const picked = state.queries.filter((q) => rows.includes(q));
  const queries = picked.length ? picked : rows;
  const diverging = subtracting(state);
  const cell = cellReader(how, attention, bytesOf(state.rollout), state.shape, state.layer, state.head);
  const before = diverging
    ? cellReader(how, bytesOf(state.reference), bytesOf(state.reference_rollout), state.shape, state.layer, state.head)
    : () => 0;
  const values = new Float32Array(queries.length * keys.length);
  queries.forEach((q, i) => keys.forEach((k, j) => { values[i * keys.length + j] = cell(q, k) - before(q, k); }));
  return { values, queries, keys, diverging, error: null };
}

/** Every head of the current layer in the window, for the grid: {maps (one per head), rows, keys, diverging}. */
export function layerMapsOf(state) {
  const [layers, heads] = state.shape;
  if (bytesOf(state.attention).length === 0 || !(state.layer >= 0 && state.layer < layers)) return null;
  const { rows, keys } = windowOf(state);
  const diverging = subtracting(state);
  const maps = range(0, heads).map((head) => {
    const cell = cellReader(ONE_HEAD, bytesOf(state.attention), null, state.shape, state.layer, head);
    const before = diverging ? cellReader(ONE_HEAD, bytesOf(state.reference), null, state.shape, state.layer, head)
      : () => 0;
    const values = new Float32Array(rows.length * keys.length);
    rows.forEach((q, i) => keys.forEach((k, j) => { values[i * keys.length + j] = cell(q, k) - before(q, k); }));
    return values;
  });
  return { maps, rows, keys, diverging };
}

/** The chosen statistic of every head: {values ((layers, heads), row-major), change, name}. */
export function statisticsOf(state) {
  const [layers, heads] = state.shape;
  const change = state.difference && bytesOf(state.statistics_change).length > 0;
  const all = floatsOf(change ? state.statistics_change : state.statistics);
  const size = layers * heads;
  return { values: all.subarray(state.statistic * size, (state.statistic + 1) * size), change,
    name: state.statistic_names[state.statistic] };
}

/** The map's title line, as the explorer's `caption` says it. */
export function titleOf(state, diverging) {
  const how = state.combinations[state.combine];
  const which = how === ONE_HEAD ? `head ${state.head}` : `${how} of heads`;
  const run = state.run ? `${state.run}, ` : "";
  const name = state.title ? `${state.title}: ` : "";
  return `${name}${run}layer ${state.layer}, ${which}${diverging ? " minus the reference" : ""}`;
}

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return [lo, hi];
}

/** [lo, hi] of a colour scale: 0..1 for attention, symmetric around 0 for a difference. */
function limits(values, diverging) {
  if (!diverging) return [0, 1];
  const [lo, hi] = extent(values);
  const limit = Math.max(Math.abs(lo), Math.abs(hi), 1e-6);
  return [-limit, limit];
}

/** An nCols × nRows canvas, one pixel per cell, coloured from `table` over lo..hi. */
function cellImage(holder, values, nRows, nCols, table, lo, hi) {
  holder.cells ??= document.createElement("canvas");
  const cells = holder.cells;
  cells.width = nCols;
  cells.height = nRows;
  const image = new ImageData(nCols, nRows);
  const span = hi - lo || 1;
  for (let i = 0; i < values.length; i++) {
    const t = Math.min(LEVELS - 1, Math.max(0, Math.round(((values[i] - lo) / span) * (LEVELS - 1)))) * 3;
    image.data[4 * i] = table[t];
    image.data[4 * i + 1] = table[t + 1];
    image.data[4 * i + 2] = table[t + 2];
    image.data[4 * i + 3] = 255;
  }
  cells.getContext("2d").putImageData(image, 0, 0);
  return cells;
}

function shortLabel(text) {
  return text.length > 12 ? `${text.slice(0, 11)}…` : text;
}

function widest(ctx, labels) {
  return Math.max(0, ...labels.map((label) => ctx.measureText(shortLabel(label)).width));
}

/**
 * Draw a heatmap on `canvas`: the cells over a plot of width × height css px, row labels on the left, column labels
 * below (read upwards), axis titles and a colour bar; with `labels` false, the cells only. Keeps the plot's box in
 * canvas.plot for the readout.
 */
function drawHeatmap(canvas, { values, rowLabels, colLabels, xTitle, yTitle, table, lo, hi, width, height, ink,
  decimals, labels = true }) {
  const ctx = canvas.getContext("2d");
  ctx.font = FONT;
  const left = labels ? Math.min(110, widest(ctx, rowLabels)) + 30 : 0;
  const bottom = labels ? Math.min(110, widest(ctx, colLabels)) + 30 : 0;
  const top = labels ? 6 : 0;
  const right = labels ? 80 : 0;
  const ratio = window.devicePixelRatio || 1;
  const cssWidth = left + width + right;
  const cssHeight = top + height + bottom;
  if (canvas.width !== Math.round(cssWidth * ratio) || canvas.height !== Math.round(cssHeight * ratio)) {
    canvas.width = Math.round(cssWidth * ratio);
    canvas.height = Math.round(cssHeight * ratio);
    canvas.style.width = `${cssWidth}px`;
    canvas.style.height = `${cssHeight}px`;
  }
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, cssWidth, cssHeight);
  const nRows = rowLabels.length;
  const nCols = colLabels.length;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(cellImage(canvas, values, nRows, nCols, table, lo, hi), left, top, width, height);
  canvas.plot = { left, top, width, height, nRows, nCols };
  if (!labels) return;

  ctx.font = FONT;
  ctx.fillStyle = ink;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  const cellHeight = height / nRows;
  const cellWidth = width / nCols;
  for (let i = 0; i < nRows; i += Math.ceil(LABEL_GAP / cellHeight)) {
    ctx.fillText(shortLabel(rowLabels[i]), left - 4, top + (i + 0.5) * cellHeight);
  }
  for (let j = 0; j < nCols; j += Math.ceil(LABEL_GAP / cellWidth)) {
    ctx.save();
    ctx.translate(left + (j + 0.5) * cellWidth, top + height + 4);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(shortLabel(colLabels[j]), 0, 0);
    ctx.restore();
  }
  ctx.textAlign = "center";
  ctx.fillText(xTitle, left + width / 2, cssHeight - 8);
  ctx.save();
  ctx.translate(10, top + height / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(yTitle, 0, 0);
  ctx.restore();

  const bar = left + width + 14; // the colour bar: hi at the top
  const ramp = Float32Array.from(range(0, LEVELS), (i) => 1 - i / (LEVELS - 1));
  ctx.drawImage(cellImage(canvas, ramp, LEVELS, 1, table, 0, 1), bar, top, 14, height);
  ctx.textAlign = "left";
  [[hi, top], [(lo + hi) / 2, top + height / 2], [lo, top + height]].forEach(([value, y]) => {
    ctx.fillText(value.toFixed(decimals), bar + 18, y);
  });
}

/** Show `describe(row, column)` in `readout` while the pointer is over a cell of `canvas`'s plot. */
function readOnHover(canvas, readout, describe) {
  canvas.addEventListener("mousemove", (event) => {
    const plot = canvas.plot;
    if (!plot) return;
    const box = canvas.getBoundingClientRect();
    const column = Math.floor(((event.clientX - box.left - plot.left) / plot.width) * plot.nCols);
    const row = Math.floor(((event.clientY - box.top - plot.top) / plot.height) * plot.nRows);
    const inside = row >= 0 && column >= 0 && row < plot.nRows && column < plot.nCols;
    readout.textContent = inside ? describe(row, column) : "";
  });
  canvas.addEventListener("mouseleave", () => { readout.textContent = ""; });
}

function render({ model, el }) {
  const part = (tag, name, style = "") => {
    const element = document.createElement(tag);
    element.className = `labkit-attention-${name}`;
    element.style.cssText = style;
    el.append(element);
    return element;
  };
  el.classList.add("labkit-attention");
  const title = part("div", "title", "font-weight: bold; margin: 4px 0;");
  const map = part("canvas", "map", "display: block;");
  const readout = part("div", "readout", "min-height: 1.4em; font-family: monospace;");
  const statisticsTitle = part("div", "statistics-title", "font-weight: bold; margin: 8px 0 4px;");
  const statistics = part("canvas", "statistics", "display: block;");
  const statisticsReadout = part("div", "statistics-readout", "min-height: 1.4em; font-family: monospace;");
  const gridTitle = part("div", "grid-title", "font-weight: bold; margin: 8px 0 4px;");
  const grid = part("div", "grid", "display: flex; flex-wrap: wrap; gap: 8px;");

  let state = null; // the traits at the last draw
  let shown = null; // mapOf(state) at the last draw
  let table = null; // statisticsOf(state) at the last draw
  let gridDrawn = null; // the grid's inputs at its last draw
  let draws = 0;
  let pending = false;
  const format = (value) => value.toFixed(state.decimals);
  readOnHover(map, readout, (i, j) => {
    const [q, k] = [shown.queries[i], shown.keys[j]];
    return `query ${q} (${state.tokens[q]}) → key ${k} (${state.key_tokens[k]}): ` +
      format(shown.values[i * shown.keys.length + j]);
  });
  readOnHover(statistics, statisticsReadout, (layer, head) =>
    `layer ${layer}, head ${head}: ${format(table.values[layer * state.shape[1] + head])}`);

  function drawGrid() {
    const inputs = [state.attention, state.reference, state.layer, state.start, state.difference, state.grid];
    if (gridDrawn && inputs.every((value, i) => value === gridDrawn[i])) return;
    gridDrawn = inputs;
    grid.replaceChildren();
    const layer = state.grid ? layerMapsOf(state) : null;
    gridTitle.textContent = layer ? `layer ${state.layer}: all ${layer.maps.length} heads` : "";
    if (!layer) return;
    const [lo, hi] = limits(Float32Array.from(layer.maps.flatMap((values) => Array.from(extent(values)))),
      layer.diverging);
    layer.maps.forEach((values, head) => {
      const cell = document.createElement("figure");
      cell.style.cssText = "margin: 0; text-align: center;";
      const caption = document.createElement("figcaption");
      caption.textContent = `head ${head}`;
      const canvas = document.createElement("canvas");
      cell.append(caption, canvas);
      grid.append(cell);
      drawHeatmap(canvas, { values, rowLabels: layer.rows.map(String), colLabels: layer.keys.map(String),
        table: SCALES[layer.diverging ? "diverging" : "blues"], lo, hi, width: GRID_SIDE, height: GRID_SIDE,
        labels: false });
    });
  }

  function draw() {
    pending = false;
    state = Object.fromEntries(TRAITS.map((name) => [name, model.get(name)]));
    const ink = (el.isConnected && getComputedStyle(el).color) || "#222";
    const result = mapOf(state);
    if (result.error) {
      title.textContent = result.error;
      title.style.color = "#c53030";
    } else {
      shown = result;
      const [lo, hi] = limits(result.values, result.diverging);
      const cell = MAP_SIDE / Math.max(result.queries.length, result.keys.length);
      drawHeatmap(map, { values: result.values, rowLabels: result.queries.map((q) => state.tokens[q]),
        colLabels: result.keys.map((k) => state.key_tokens[k]),
        xTitle: state.cross ? "source token (key)" : "key", yTitle: state.cross ? "target token (query)" : "query",
        table: SCALES[result.diverging ? "diverging" : "blues"], lo, hi, width: cell * result.keys.length,
        height: cell * result.queries.length, ink, decimals: state.decimals });
      title.textContent = titleOf(state, result.diverging);
      title.style.color = "";
      map.dataset.drawn = String(++draws);
    }
    if (bytesOf(state.statistics).length) {
      table = statisticsOf(state);
      const [layers, heads] = state.shape;
      const [lo, hi] = table.change ? limits(table.values, true) : extent(table.values);
      const cell = Math.min(STATISTIC_CELL, MAP_SIDE / heads);
      statisticsTitle.textContent = `${table.name} of every head${table.change ? " (change from the reference)" : ""}`;
      drawHeatmap(statistics, { values: table.values, rowLabels: range(0, layers).map(String),
        colLabels: range(0, heads).map(String), xTitle: "head", yTitle: "layer",
        table: SCALES[table.change ? "diverging" : "viridis"], lo, hi: Math.max(hi, lo + 1e-6), width: cell * heads,
        height: cell * layers, ink, decimals: state.decimals });
      statistics.dataset.drawn = String(draws);
    }
    drawGrid();
  }

  const schedule = () => {
    if (!pending) {
      pending = true;
      queueMicrotask(draw); // once for several traits set together (a checkpoint's buffers)
    }
  };
  for (const name of TRAITS) model.on(`change:${name}`, schedule);
  draw();
  return () => { for (const name of TRAITS) model.off(`change:${name}`, schedule); };
}

export default { render };
