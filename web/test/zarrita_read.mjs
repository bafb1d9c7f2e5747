// Used by tests/test_viewer_server.py: read a window of L0 from a store URL with zarrita
// (range requests through FetchStore) and print it as JSON.
import * as zarr from "zarrita";
const [url, r0, r1, c0, c1] = process.argv.slice(2);
const store = new zarr.FetchStore(url);
const root = zarr.root(store);
const emb = await zarr.open(root.resolve("L0/embeddings"), { kind: "array" });
const sc = await zarr.open(root.resolve("L0/scales"), { kind: "array" });
const win = [zarr.slice(Number(r0), Number(r1)), zarr.slice(Number(c0), Number(c1))];
const e = await zarr.get(emb, [null, ...win]);
const s = await zarr.get(sc, win);
console.log(JSON.stringify({ shape: e.shape, emb: Array.from(e.data), scales: Array.from(s.data, (v) => (Number.isNaN(v) ? null : v)) }));
