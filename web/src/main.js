// The map page of `geotessera-registry serve`: server tiles or a PMTiles archive on MapLibre.
//
// Server tiles go through the "gt" protocol: a fetch that MapLibre cancels (AbortController)
// when a tile is no longer needed, and that reads the level header of every tile for the
// status line. Without a server (the page opened from static hosting) the page can still
// open a PMTiles archive by URL (?pmtiles=URL), read by range requests.

import * as maplibregl from "maplibre-gl";
import "maplibre-gl/dist/maplibre-gl.css";
import { PMTiles, Protocol } from "pmtiles";
import proj4 from "proj4";
import "./style.css";
import { drawVector } from "./chart.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = {
  doc: null, year: null, mode: params.get("mode") === "bands" ? "bands" : "preview",
  bands: (params.get("bands") || "0,1,2").split(",").map(Number),
  levels: {}, lastLevel: null, pending: 0, batch: 0, done: 0, aborted: 0, failed: 0,
  pmtiles: null, inspected: null, errors: [],
};
window.__viewer = { state, map: null, maplibreVersion: maplibregl.getVersion() };

// --- loading bar and tile accounting ---------------------------------------------------------

function tileStarted() {
  if (state.pending === 0) { state.batch = 0; state.done = 0; }
  state.pending += 1; state.batch += 1;
  drawLoading();
}

function tileEnded() {
  state.pending -= 1; state.done += 1;
  drawLoading();
}

function drawLoading() {
  const box = $("loading");
  box.classList.toggle("done", state.pending === 0);
  $("loading-bar").style.width = `${(100 * state.done / Math.max(state.batch, 1)).toFixed(0)}%`;
  drawStatus();
}

async function tracked(load, signal) {
  tileStarted();
  const onAbort = () => { state.aborted += 1; };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await load();
  } finally {
    signal?.removeEventListener("abort", onAbort);
    tileEnded();
  }
}

maplibregl.addProtocol("gt", (req, controller) => tracked(async () => {
  const url = req.url.replace(/^gt:\/\//, `${location.protocol}//`);
  const res = await fetch(url, { signal: controller.signal });
  if (!res.ok) throw new Error(`${res.status} ${res.statusText}: ${url}`);
  const z = Number(new URL(url).pathname.split("/")[3]);
  state.levels[z] = { level: res.headers.get("X-GeoTessera-Level"),
    zones: res.headers.get("X-GeoTessera-Zones"),
    pixelSize: res.headers.get("X-GeoTessera-Pixel-Size") };
  if (state.levels[z].level !== "none") state.lastLevel = { z, ...state.levels[z] };
  return { data: await res.arrayBuffer() };
}, controller.signal));

const pmProtocol = new Protocol();
maplibregl.addProtocol("pmtiles", (req, controller) =>
  tracked(() => pmProtocol.tile(req, controller), controller.signal));

// --- status -----------------------------------------------------------------------------------

// MapLibre's zoom counts 512 px tiles: a 256 px raster source loads tiles one zoom finer.
function tileZoom(map) {
  const src = map.getSource(state.pmtiles ? "pm" : "gt");
  const lo = src?.minzoom ?? 0, hi = src?.maxzoom ?? 22;
  return Math.min(Math.max(Math.round(map.getZoom() + 1), lo), hi);
}

function drawStatus() {
  const map = window.__viewer.map;
  if (!map) return;
  const z = tileZoom(map);
  const parts = [`zoom ${map.getZoom().toFixed(2)} (tiles z${z})`];
  if (state.pmtiles) {
    parts.push(`PMTiles ${state.pmtiles}`);
  } else {
    const at = state.levels[z];
    const lv = at && at.level !== "none" ? at : state.lastLevel;
    parts.push(lv ? `level ${lv.level} (${lv.pixelSize} m; ${lv.zones})` : "level: no data here");
  }
  if (state.pending) parts.push(`${state.pending} tile(s) loading`);
  $("status").textContent = parts.join(" · ");
  $("status").dataset.level = state.pmtiles ? "" : (state.levels[z]?.level ?? "");
}

// --- sources and layers -------------------------------------------------------------------------

function tileTemplate() {
  const q = state.mode === "bands" ? `?bands=${state.bands.join(",")}` : "";
  return `${location.origin}/tiles/${state.year}/{z}/{x}/{y}.png${q}`;
}

function yearStores() {
  return state.doc ? state.doc.stores.filter((s) => s.year === state.year) : [];
}

function yearBounds() {
  const b = yearStores().map((s) => s.bbox);
  if (!b.length) return null;
  return [Math.min(...b.map((v) => v[0])), Math.min(...b.map((v) => v[1])),
    Math.max(...b.map((v) => v[2])), Math.max(...b.map((v) => v[3]))];
}

function nativeZoom() {
  const stores = yearStores();
  if (!stores.length) return 14;
  const px = Math.min(...stores.map((s) => s.levels[0].pixel_size));
  const b = yearBounds();
  const lat = ((b[1] + b[3]) / 2) * Math.PI / 180;
  return Math.round(Math.log2((40075016.686 * Math.cos(lat)) / (256 * px)));
}

function outlines() {
  const features = [];
  for (const s of yearStores()) {
    features.push({ type: "Feature", properties: { kind: "store", zone: s.zone },
      geometry: { type: "LineString", coordinates: s.outline } });
    const [w, south, e, north] = s.bbox;
    for (const lon of [-180 + 6 * (s.zone - 1), -180 + 6 * s.zone]) {
      if (lon < w - 1 || lon > e + 1) continue;
      features.push({ type: "Feature", properties: { kind: "zone", zone: s.zone },
        geometry: { type: "LineString", coordinates: [[lon, south - 1], [lon, north + 1]] } });
    }
  }
  return { type: "FeatureCollection", features };
}

function showServerTiles(map) {
  const url = tileTemplate().replace(/^https?:/, "gt:");
  const bounds = yearBounds();
  if (map.getSource("gt")) {
    map.getSource("gt").setTiles([url]);
  } else {
    map.addSource("gt", { type: "raster", tiles: [url], tileSize: 256, minzoom: 0,
      maxzoom: Math.min(nativeZoom() + 3, 22), ...(bounds ? { bounds } : {}) });
    map.addLayer({ id: "gt", type: "raster", source: "gt",
      paint: { "raster-resampling": "nearest", "raster-fade-duration": 0 } }, "outline-store");
  }
  map.getSource("outlines").setData(outlines());
  $("tile-url").textContent = tileTemplate();
}

async function openPMTiles(map, url, fit = false) {
  const abs = new URL(url, location.href).href;
  const archive = new PMTiles(abs);
  pmProtocol.add(archive);
  const header = await archive.getHeader();
  if (map.getLayer("pm")) map.removeLayer("pm");
  if (map.getSource("pm")) map.removeSource("pm");
  map.addSource("pm", { type: "raster", url: `pmtiles://${abs}`, tileSize: 256 });
  map.addLayer({ id: "pm", type: "raster", source: "pm",
    paint: { "raster-resampling": "nearest", "raster-fade-duration": 0 } }, "outline-store");
  if (map.getLayer("gt")) map.setLayoutProperty("gt", "visibility", "none");
  state.pmtiles = abs;
  $("tile-url").textContent = `pmtiles://${abs}`;
  if (fit) {
    map.fitBounds([[header.minLon, header.minLat], [header.maxLon, header.maxLat]], { animate: false });
  }
  drawStatus();
}

// --- inspect ------------------------------------------------------------------------------------

export function utmOf(lon, lat) {
  const zone = Math.min(Math.max(Math.floor((lon + 180) / 6) + 1, 1), 60);
  // EPSG:326ZZ for both hemispheres, as the stores: northings are negative south of the equator.
  const [e, n] = proj4("EPSG:4326", `+proj=utm +zone=${zone} +datum=WGS84 +units=m +no_defs`, [lon, lat]);
  return { zone, easting: e, northing: n };
}

let marker = null;

async function inspect(lngLat) {
  const { lng, lat } = lngLat.wrap();
  const utm = utmOf(lng, lat);
  marker ??= new maplibregl.Marker({ color: "#ffcc00", scale: 0.6 });
  marker.setLngLat([lng, lat]).addTo(window.__viewer.map);
  $("inspect").hidden = false;
  $("i-lonlat").textContent = `${lng.toFixed(6)}, ${lat.toFixed(6)}`;
  $("i-zone").textContent = `${utm.zone} (EPSG:${32600 + utm.zone})`;
  $("i-utm").textContent = `${utm.easting.toFixed(1)}, ${utm.northing.toFixed(1)}`;
  if (!state.doc) {
    $("i-summary").textContent = "point look-up needs `geotessera-registry serve`";
    return;
  }
  const res = await fetch(`/point?lon=${lng}&lat=${lat}&year=${state.year}`);
  const doc = await res.json();
  if (!res.ok) throw new Error(doc.error || `${res.status} /point`);
  const vector = doc.points[0].vector;
  state.inspected = { lon: lng, lat, ...utm, vector };
  $("i-summary").textContent = vector ? `${vector.length} bands, |v|max ${Math.max(...vector.map(Math.abs)).toPrecision(4)}` : "no data";
  $("i-vector").textContent = JSON.stringify(vector);
  drawVector($("i-chart"), vector, state.mode === "bands" ? state.bands : []);
}

// --- controls -----------------------------------------------------------------------------------

function wireControls(map) {
  $("year").addEventListener("change", (e) => { state.year = Number(e.target.value); state.levels = {}; showServerTiles(map); });
  $("mode").value = state.mode;
  $("bands-row").hidden = state.mode !== "bands";
  state.bands.forEach((b, i) => { $(["band-r", "band-g", "band-b"][i]).value = b; });
  const applyBands = () => {
    state.mode = $("mode").value;
    $("bands-row").hidden = state.mode !== "bands";
    state.bands = ["band-r", "band-g", "band-b"].map((id) => Number($(id).value));
    state.levels = {};
    showServerTiles(map);
  };
  $("mode").addEventListener("change", applyBands);
  $("bands-apply").addEventListener("click", applyBands);
  $("outlines").addEventListener("change", (e) => {
    for (const id of ["outline-store", "outline-zone"]) {
      map.setLayoutProperty(id, "visibility", e.target.checked ? "visible" : "none");
    }
  });
  $("pmtiles-open").addEventListener("click", () => {
    const url = $("pmtiles-url").value.trim();
    if (url) openPMTiles(map, url).catch(fail);
  });
  map.on("click", (e) => inspect(e.lngLat).catch(fail));
  map.on("moveend", drawStatus);
}

function fail(err) {
  const message = String(err?.message || err);
  state.errors.push(message);
  document.title = `ERR ${message}`;
  $("status").textContent = `error: ${message}`;
  console.error(message);
}

async function loadDocument() {
  try {
    const res = await fetch("./stores.json");
    return res.ok ? await res.json() : null;
  } catch {
    return null; // opened without the server: PMTiles only
  }
}

async function main() {
  const initialHash = location.hash; // MapLibre writes the hash once the map loads
  state.doc = await loadDocument();
  const map = new maplibregl.Map({
    container: "map", hash: true, attributionControl: false, fadeDuration: 0,
    style: { version: 8, sources: {}, layers: [{ id: "bg", type: "background", paint: { "background-color": "#1d2026" } }] },
    center: [0, 0], zoom: 1, maxZoom: 22,
  });
  window.__viewer.map = map;
  map.on("error", (e) => fail(e.error || e));
  await map.once("load");
  map.addSource("outlines", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  map.addLayer({ id: "outline-zone", type: "line", source: "outlines", filter: ["==", ["get", "kind"], "zone"],
    paint: { "line-color": "#ff7043", "line-width": 1, "line-dasharray": [4, 3] } });
  map.addLayer({ id: "outline-store", type: "line", source: "outlines", filter: ["==", ["get", "kind"], "store"],
    paint: { "line-color": "#ffcc00", "line-width": 1 } });
  wireControls(map);
  if (state.doc) {
    const years = state.doc.years;
    state.year = years.includes(Number(params.get("year"))) ? Number(params.get("year")) : years[years.length - 1];
    $("year").replaceChildren(...years.map((y) => new Option(String(y), String(y), false, y === state.year)));
    showServerTiles(map);
    const b = yearBounds();
    if (b && !initialHash) map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { animate: false, padding: 20 });
  } else {
    $("year").disabled = true; $("mode").disabled = true;
    $("status").textContent = "no server: open a PMTiles URL";
  }
  if (params.get("pmtiles")) {
    $("pmtiles-url").value = params.get("pmtiles");
    await openPMTiles(map, params.get("pmtiles"), !initialHash);
  }
  map.once("idle", () => {
    drawStatus();
    window.__done = true;
    if (!state.errors.length) document.title = `OK ${document.title}`;
  });
  map.triggerRepaint();
}

main().catch(fail);
