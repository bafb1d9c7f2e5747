#!/usr/bin/env bash
# Regenerates the pictures of docs/h3.md from tiny demo archives (a few minutes on 2 cores).
#   bash docs/img/h3_demo.sh [WORKDIR]      (needs the h3 and plot extras)
# GEOTESSERA_CLI overrides the command (default: geotessera-registry on PATH).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$(mktemp -d)}
g=${GEOTESSERA_CLI:-geotessera-registry}

# 1. The demo area (zones 30 and 31, both hemispheres) at 80 m: hexagons at resolution 6.
$g demo-data "$work/demo" --pixel-size 80 --bands 32 --year 2024 -q
$g zarr-build "$work/demo" -o "$work/demo-stores" --no-stac --bands 32 -q
$g h3 "$work/demo-stores" --year 2024 --res 6 -o "$work/demo-h3.zarr" --overwrite -q
$g h3-plot "$work/demo-h3.zarr" -o "$here/h3_demo_map.png" --projection equal-area \
   --extent data --width 1400 -q

# 2. Five small patches around the world, one across the antimeridian, at resolution 1.
for area in "-0.3 0.3 -0.2 0.2" "179.7 180 -16.3 -16.0" "-180 -179.7 -16.3 -16.0" \
            "14.0 14.3 45.0 45.3" "-60.3 -60.0 -3.3 -3.0" "105.0 105.3 30.0 30.3"; do
  read -r w e s n <<<"$area"
  $g demo-data "$work/world" --lon-min "$w" --lon-max "$e" --lat-min "$s" --lat-max "$n" \
     --pixel-size 400 --bands 32 --year 2024 -q
done
$g zarr-build "$work/world" -o "$work/world-stores" --no-stac --bands 32 -q
$g h3 "$work/world-stores" --year 2024 --res 1 -o "$work/world-h3.zarr" --overwrite -q
$g h3-plot "$work/world-h3.zarr" -o "$here/h3_world_globe.png" --centre 20,10 --width 1400 -q
$g h3-plot "$work/world-h3.zarr" -o "$here/h3_world_map.png" --projection equal-area \
   --width 1400 -q
echo "pictures in $here; stores and summaries in $work"
