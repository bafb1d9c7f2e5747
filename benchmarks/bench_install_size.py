"""How many MB a read-only install pulls in: the installed size of every distribution in
the dependency closure of ``geotessera[read]`` (the requirements from pyproject.toml, their
dependencies from this environment's metadata, so run it in a venv where the extra is
installed), with the largest ones listed.

    python benchmarks/bench_install_size.py [EXTRA ...]
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

MB = 1e6


def _name(req: str) -> tuple[str, str | None, list[str]]:
    name = re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0]
    extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", req)
    extras = re.search(r"\[([^\]]+)\]", req.split(";")[0])
    return name, (extra.group(1) if extra else None), (extras.group(1).split(",") if extras else [])


def roots(extras: list[str]) -> list[tuple[str, list[str]]]:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [(_name(r)[0], _name(r)[2]) for r in reqs]


def closure(extras: list[str]) -> set[str]:
    seen, found, todo = set(), set(), roots(extras)
    while todo:
        name, want = todo.pop()
        key = name.lower().replace("_", "-")
        if (key, tuple(want)) in seen:
            continue
        seen.add((key, tuple(want)))
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        found.add(key)
        for req in dist.requires or []:
            dep, marker_extra, dep_extras = _name(req)
            if "extra" in req and marker_extra not in want:
                continue
            todo.append((dep, dep_extras))
    return found


def size_of(name: str) -> int:
    dist = distribution(name)
    total = 0
    for f in dist.files or []:
        p = Path(dist.locate_file(f))
        if p.is_file():
            total += p.stat().st_size
    return total


def main() -> None:
    extras = sys.argv[1:] or ["read"]
    names = sorted(closure(extras))
    sizes = sorted(((size_of(n), n) for n in names), reverse=True)
    total = sum(s for s, _ in sizes)
    print(f"geotessera[{','.join(extras)}]: {len(names)} distributions, {total / MB:.0f} MB "
          "installed")
    for s, n in sizes[:8]:
        print(f"  {n:24s} {s / MB:7.1f} MB")


if __name__ == "__main__":
    main()
