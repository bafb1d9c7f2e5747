"""Damaged stores are exit 1 naming the store and the file from every command that reads
stores, never exit 3 (issue 13, item 4); verify reports consolidated metadata that disagrees
with the array documents, and checks every shard object's index (item 5). Point and region
reads check the documents they decode with, on first use: damage in a node they do not read
does not stop them, and is still reported by the commands that check every node."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geotessera import read
from geotessera.archive.demo import DemoSpec, write_demo_archive
from geotessera.cli import cli
from geotessera.errors import StoreError
from geotessera.store import meta

SPEC = DemoSpec(lon_min=0.0, lon_max=0.2, lat_min=0.0, lat_max=0.1, pixel_size=400.0,
                bands=4, years=(2024,))
BUILD = ["--bands", "4", "-j", "1", "--shard-px", "32", "--chunk-px", "16",
         "--scales-chunk-px", "32"]
NAME = "utm31_2024.zarr"
EMB_DOC = "L0/embeddings/zarr.json"
SCALES_DOC = "L0/scales/zarr.json"
X_DOC = "L0/x/zarr.json"  # a coordinate array: no point or region read decodes with it
POINT = (0.05, 0.05)  # a land point of the store


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("damaged")
    base, out = root / "archive", root / "stores"
    write_demo_archive(base, SPEC)
    res = CliRunner().invoke(cli, ["zarr-build", str(base), "-o", str(out), "-q", *BUILD])
    assert res.exit_code == 0, res.stderr
    return {"base": base, "out": out}


def _garbage(p: Path) -> None:
    p.write_bytes(b"\xff\xfe\x00 not json at all \x9c")


def _cut(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _disagree(p: Path) -> None:  # valid JSON, but not what the consolidated metadata says
    doc = json.loads(p.read_text())
    doc["attributes"]["long_name"] = "edited after consolidation"
    p.write_text(json.dumps(doc))


DAMAGES = {  # name: (file below the store, damage, text the error line must hold)
    "root-garbage": ("zarr.json", _garbage, f"{NAME}/zarr.json"),
    "root-cut": ("zarr.json", _cut, f"{NAME}/zarr.json"),
    "root-missing": ("zarr.json", lambda p: p.unlink(), NAME),
    "emb-garbage": (EMB_DOC, _garbage, f"{NAME}/{EMB_DOC}"),
    "emb-cut": (EMB_DOC, _cut, f"{NAME}/{EMB_DOC}"),
    "emb-disagrees": (EMB_DOC, _disagree, f"{NAME}/{EMB_DOC}"),
    "scales-disagrees": (SCALES_DOC, _disagree, f"{NAME}/{SCALES_DOC}"),
}
COMMANDS = {
    "info": "info {store}",
    "sample": "sample --lon 0.15 --lat 0.05 --year 2024 {out}",
    "rgb": "rgb {out} -j 1",
    "stac": "stac {out}",
    "quicklook": "quicklook {store} -o {tmp}/q.png",
    "verify": "verify {store} --base-dir {base} -j 1",
}


@pytest.fixture
def damaged_copy(built, tmp_path):
    out = tmp_path / "stores"
    shutil.copytree(built["out"], out, symlinks=True)  # the published link stays a link
    return out


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_damaged_store_is_exit_1_naming_store_and_file(built, damaged_copy, tmp_path,
                                                       command, damage):
    rel, hurt, text = DAMAGES[damage]
    hurt(damaged_copy / NAME / rel)
    line = COMMANDS[command].format(store=damaged_copy / NAME, out=damaged_copy,
                                    base=built["base"], tmp=tmp_path)
    res = CliRunner().invoke(cli, line.split())
    assert res.exit_code == 1, (res.stdout, res.stderr)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    # the store is named by its published name or by the version that name points at
    # (utm31_2024/v….zarr), the file by its path below it
    version = (damaged_copy / NAME).resolve().relative_to(damaged_copy.resolve())
    assert text in errors[0] or text.replace(NAME, str(version)) in errors[0], errors[0]
    assert "internal error" not in res.stderr


def test_verify_reports_disagreeing_consolidated_metadata_as_a_problem(built, damaged_copy):
    _disagree(damaged_copy / NAME / EMB_DOC)
    res = CliRunner().invoke(cli, ["verify", str(damaged_copy / NAME), "--base-dir",
                                   str(built["base"]), "-j", "1", "--json"])
    assert res.exit_code == 1
    problems = json.loads(res.stdout)["problems"]
    assert any(EMB_DOC in p and "disagrees with the consolidated metadata" in p
               for p in problems), problems


@pytest.mark.parametrize("hurt", [_garbage, _disagree])
def test_a_point_read_is_not_stopped_by_a_node_it_does_not_decode_with(built, damaged_copy,
                                                                        tmp_path, hurt):
    """``L0/x`` damaged: ``sample`` reads the root and L0's embeddings and scales documents
    only, so it answers, with the undamaged store's values; every command that checks every
    node (info, verify) and a full open still name the file."""
    hurt(damaged_copy / NAME / X_DOC)
    want = read.sample([POINT], 2024, built["out"])
    assert np.isfinite(want).all()
    np.testing.assert_array_equal(read.sample([POINT], 2024, damaged_copy), want)
    zs = read.ZoneStore.open(damaged_copy / NAME)
    assert "L0/x" not in zs.checked and {"L0/embeddings", "L0/scales"} <= zs.checked
    for check in (zs.check_all, lambda: meta.open_root(damaged_copy / NAME),
                  lambda: read.open_store(damaged_copy / NAME)):
        with pytest.raises(StoreError, match=X_DOC):
            check()
    for line in (f"info {damaged_copy / NAME}",
                 f"verify {damaged_copy / NAME} --base-dir {built['base']} -j 1"):
        res = CliRunner().invoke(cli, line.split())
        assert res.exit_code == 1 and X_DOC in res.stderr, (line, res.stderr)


@pytest.mark.parametrize("doc", [EMB_DOC, SCALES_DOC])
@pytest.mark.parametrize("hurt", [_garbage, _cut, _disagree])
def test_a_point_read_refuses_a_damaged_document_it_decodes_with(damaged_copy, doc, hurt):
    hurt(damaged_copy / NAME / doc)
    with pytest.raises(StoreError, match=doc) as e:
        read.sample([POINT], 2024, damaged_copy)
    assert NAME in str(e.value) or "utm31_2024/v" in str(e.value)


def test_a_document_agreeing_with_its_broken_entry_is_a_store_error(damaged_copy):
    """``L0/scales`` with an unreadable fill value in its file and its consolidated entry
    alike (they agree, so the check passes): the point read names the file, not an
    internal error."""
    store = damaged_copy / NAME
    doc = json.loads((store / SCALES_DOC).read_text())
    doc["fill_value"] = "not a number"
    (store / SCALES_DOC).write_text(json.dumps(doc))
    root = json.loads((store / "zarr.json").read_text())
    root["consolidated_metadata"]["metadata"]["L0/scales"] = doc
    (store / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(StoreError, match=f"{SCALES_DOC}: damaged metadata: ValueError"):
        read.sample([POINT], 2024, damaged_copy)


def test_a_coarser_level_is_checked_when_a_read_first_uses_it(built, damaged_copy):
    """``L1/embeddings`` disagrees: L0 points read; a region read at L1's pixel size is a
    StoreError naming the file, before anything is decoded with it."""
    _disagree(damaged_copy / NAME / "L1/embeddings/zarr.json")
    zs = read.ZoneStore.open(damaged_copy / NAME)
    assert [lv.path for lv in zs.meta.levels][:2] == ["L0", "L1"]
    l1 = zs.meta.levels[1]
    bbox, res = (0.02, 0.01, 0.18, 0.09), l1.pixel_size
    np.testing.assert_array_equal(read.sample([POINT], 2024, damaged_copy),
                                  read.sample([POINT], 2024, built["out"]))
    assert read.read_region(bbox, 2024, built["out"], resolution=res).attrs[
        "geotessera:levels"] == {"utm31": "L1"}
    with pytest.raises(StoreError, match="L1/embeddings/zarr.json"):
        read.read_region(bbox, 2024, damaged_copy, resolution=res)
    with pytest.raises(StoreError, match="L1/embeddings/zarr.json"):
        zs.arrays(l1)


def test_the_preview_array_is_checked_before_it_is_read(built, damaged_copy):
    """``L0/rgba`` (the viewer's and the map's colours) disagrees: ``ZoneStore.array``
    refuses it naming the file; undamaged, it is zarr's array."""
    _disagree(damaged_copy / NAME / "L0/rgba/zarr.json")
    level = read.ZoneStore.open(built["out"] / NAME).meta.levels[0]
    good = read.ZoneStore.open(built["out"] / NAME).array(level, "rgba")
    assert good.shape[0] == 4 and good[:].any()
    with pytest.raises(StoreError, match="L0/rgba/zarr.json"):
        read.ZoneStore.open(damaged_copy / NAME).array(level, "rgba")


def _shard_objects(store: Path) -> list[Path]:
    return sorted(p for p in (store / "L0" / "embeddings" / "c").rglob("*") if p.is_file())


def test_verify_states_its_counts_and_passes_a_good_store(built):
    store = built["out"] / NAME
    res = CliRunner().invoke(cli, ["verify", str(store), "--base-dir", str(built["base"]),
                                   "-j", "1", "--json", "--sample", "1"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    levels = sorted(store.glob("L*/embeddings/c"))
    n_objects = sum(1 for d in levels for p in d.rglob("*") if p.is_file())
    assert doc["shards_checked"] == n_objects > len(_shard_objects(store))  # every level
    assert doc["chunks_decoded"] >= n_objects
    assert doc["shards_compared"] == 1 < doc["shards_nonempty"]


@pytest.mark.parametrize("where", ["index-first", "index-middle", "index-crc"])
def test_a_flipped_index_byte_in_any_shard_is_found_by_default(built, damaged_copy, where):
    """Not sampled: every shard object's index is CRC-checked, so the flip is always found,
    whichever shard it is in (the last one here, which the 1-shard pixel sample misses)."""
    obj = _shard_objects(damaged_copy / NAME)[-1]
    data = bytearray(obj.read_bytes())
    n_index = 2 * 2 * 16 + 4  # 2x2 inner chunks per shard at these sizes
    pos = {"index-first": len(data) - n_index, "index-middle": len(data) - n_index // 2,
           "index-crc": len(data) - 2}[where]
    data[pos] ^= 0x40
    obj.write_bytes(bytes(data))
    res = CliRunner().invoke(cli, ["verify", str(damaged_copy / NAME), "--base-dir",
                                   str(built["base"]), "-j", "1", "--json", "--sample", "1"])
    assert res.exit_code == 1
    problems = json.loads(res.stdout)["problems"]
    rel = obj.relative_to(damaged_copy).as_posix()
    assert any(rel in p and "checksum" in p for p in problems), problems


@pytest.mark.parametrize("codec", ["default", "zstd:3"])
def test_garbled_chunks_of_an_unsampled_shard_are_found_by_the_chunk_decode(built,
                                                                              damaged_copy,
                                                                              tmp_path, codec):
    """Every inner chunk's first 4 bytes in the last shard zeroed (the blosc header's
    version, flags and typesize of the default codec; the zstd frame magic with ``--codec
    zstd:3``), index intact (its CRC still passes): only the seeded chunk decode can find
    it; the 1-shard pixel sample compares another shard."""
    if codec != "default":
        damaged_copy = tmp_path / "zstd"
        res = CliRunner().invoke(cli, ["zarr-build", str(built["base"]), "-o",
                                       str(damaged_copy), "-q", "--no-rgb", "--no-stac",
                                       "--codec", codec, *BUILD])
        assert res.exit_code == 0, res.stderr
    emb = json.loads((damaged_copy / NAME / EMB_DOC).read_text())
    inner = emb["codecs"][0]["configuration"]["codecs"][-1]["name"]
    assert inner == {"default": "blosc", "zstd:3": "zstd"}[codec]
    obj = _shard_objects(damaged_copy / NAME)[-1]
    data = bytearray(obj.read_bytes())
    index = np.frombuffer(bytes(data[-68:-4]), "<u8").reshape(-1, 2)
    for offset, _ in index[index[:, 0] != 2**64 - 1]:
        data[int(offset): int(offset) + 4] = b"\x00" * 4
    obj.write_bytes(bytes(data))
    res = CliRunner().invoke(cli, ["verify", str(damaged_copy / NAME), "--base-dir",
                                   str(built["base"]), "-j", "1", "--json", "--sample", "1"])
    assert res.exit_code == 1
    rel = obj.relative_to(damaged_copy).as_posix()
    problems = json.loads(res.stdout)["problems"]
    assert any(rel in p and "does not decode" in p for p in problems), problems
