"""Regenerate the README's generated tables from the registry.

The README marks each generated block with the command that produces it:

    <!-- generated: mimzoo list --markdown -->
    ...
    <!-- end generated -->

`python docs/sync_readme.py` rewrites every such block from the installed registry;
`python docs/sync_readme.py --check` exits 1 when one is out of date (tests/test_readme.py runs it).
Only `mimzoo list [--taxonomy] --markdown` is allowed in markers, and only mimzoo's own plugins are
listed (third-party plugins installed here are left out).
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- generated: (?P<cmd>[^>]*?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def command_output(command: str) -> str:
    """What `command` (a `mimzoo list ...` line) prints for mimzoo's own plugins.

    Third-party plugins installed in the environment (the example plugin, say) are left out, so the
    README describes the package, not the machine it was regenerated on.
    """
    from mimzoo.api.listing import model_table, taxonomy_table
    from mimzoo.cli.main import MODEL_COLUMNS, TAXONOMY_COLUMNS
    from mimzoo.cli.table import markdown
    from mimzoo.registry import get_registry

    argv = shlex.split(command)
    if argv[:2] != ["mimzoo", "list"] or "--markdown" not in argv or set(argv[2:]) - {"--markdown", "--taxonomy"}:
        raise SystemExit(f"README marker runs {command!r}; only 'mimzoo list [--taxonomy] --markdown' is allowed")
    own = {e.name: e for e in get_registry().models("*", include_test=True) if e.distribution == "mimzoo"}
    if "--taxonomy" in argv:
        titles = {e.method.title for e in own.values()}
        return markdown([r for r in taxonomy_table() if r["method"] in titles], [("family", "family"), *TAXONOMY_COLUMNS])
    return markdown([r for r in model_table() if r["name"] in own], MODEL_COLUMNS)


def regenerate(text: str) -> str:
    """`text` with every generated block replaced by its command's current output."""
    return BLOCK.sub(lambda m: m.group(1) + command_output(m.group("cmd")).rstrip("\n") + "\n" + m.group(4), text)


def main(argv: list[str]) -> int:
    text = README.read_text()
    new = regenerate(text)
    if "--check" in argv:
        if new != text:
            print("README.md's generated tables are stale: run `python docs/sync_readme.py`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        tmp = README.with_name(".README.md.tmp")
        tmp.write_text(new)
        tmp.replace(README)
        print("README.md: generated tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
