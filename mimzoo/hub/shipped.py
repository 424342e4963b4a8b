"""The project's release recipes, shipped inside the package so `mimzoo release <model>` works from a wheel.

``exports/<model>.toml`` in the repository is the source; ``mimzoo/assets/exports/`` holds exact copies
that the wheel carries (tests/test_packaging.py fails when the two differ; ``sync_shipped()`` copies them).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .recipe import RecipeError

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "exports"  # the copies inside the package
SOURCE = Path(__file__).resolve().parents[2] / "exports"  # the repository's recipes (absent in a wheel)


def shipped_recipes() -> dict[str, Path]:
    """Model name -> its release recipe shipped with mimzoo."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.toml"))}


def resolve_recipe(spec: str | Path) -> Path:
    """The recipe file `spec` names: an existing file as given, or a model name whose recipe ships with mimzoo.

    >>> resolve_recipe("mae-vit-digits").name  # doctest: +SKIP
    'mae-vit-digits.toml'
    """
    path = Path(spec)
    if path.exists():
        return path  # a file (or whatever load_recipe then refuses)
    shipped = shipped_recipes()
    name = path.stem if path.suffix == ".toml" else path.name
    if path.parent == Path(".") and path.suffix != ".toml":  # a bare name, e.g. `mimzoo release mae-vit-digits`
        if name in shipped:
            return shipped[name]
        if name.lower() in shipped:
            return shipped[name.lower()]
        raise RecipeError(f"no recipe file '{spec}' and no shipped recipe for a model of that name; give a recipe "
                          f"file (format: exports/README.md) or one of: {', '.join(shipped) or 'none shipped'}")
    if name in shipped:  # e.g. exports/mae-vit-digits.toml, run outside the repository
        raise RecipeError(f"release recipe {spec} not found; the recipe for {name} ships with mimzoo: "
                          f"run `mimzoo release {name}`")
    return path  # load_recipe says it is not found


def sync_shipped(source: Path = SOURCE, target: Path = SHIPPED) -> list[str]:
    """Copy the repository's recipes over the shipped copies (a maintainer's step); names of files changed."""
    target.mkdir(parents=True, exist_ok=True)
    changed = []
    for src in sorted(source.glob("*.toml")):
        dst = target / src.name
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)
            changed.append(src.name)
    for old in sorted(target.glob("*.toml")):
        if not (source / old.name).is_file():
            old.unlink()
            changed.append(old.name)
    return changed
