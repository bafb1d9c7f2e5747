// Bundle the page into ../geotessera/viewer/static/ (committed, so pip users need no npm), or
// into the directory given as the first argument (the tests compare a fresh build with it).
// Output: app.js (+ app.css) from src/main.js, MapLibre's worker next to it (MapLibre loads
// it from ./maplibre-gl-worker.mjs beside the bundle), and index.html with the versions.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";

const out = process.argv[2] ?? new URL("../geotessera/viewer/static/", import.meta.url).pathname;
const version = (name) =>
  JSON.parse(readFileSync(new URL(`node_modules/${name}/package.json`, import.meta.url))).version;

mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: { app: "src/main.js" },
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2022",
  legalComments: "eof",
  outdir: out,
  logLevel: "warning",
});
copyFileSync(new URL("node_modules/maplibre-gl/dist/maplibre-gl-worker.mjs", import.meta.url),
  `${out}/maplibre-gl-worker.mjs`);
const html = readFileSync(new URL("src/index.html", import.meta.url), "utf8")
  .replaceAll("@MAPLIBRE_VERSION@", version("maplibre-gl"))
  .replaceAll("@PMTILES_VERSION@", version("pmtiles"));
writeFileSync(`${out}/index.html`, html);
console.log(`built ${out} (maplibre-gl ${version("maplibre-gl")}, pmtiles ${version("pmtiles")})`);
