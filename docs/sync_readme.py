"""Regenerate the README's generated tables from the registry.

The README marks each generated block with the command that produces it:

    <!-- generated: mimzoo list --markdown -->
    ...
    <!-- end generated -->

`python docs/sync_readme.py` rewrites every such block from the installed registry;
`python docs/sync_readme.py --check` exits 1 when one is out of date (tests/test_readme.py runs it).
Only `mimzoo list ...` commands are allowed in markers: the README cannot make this script run
anything else.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- generated: (?P<cmd>[^>]*?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def command_output(command: str) -> str:
    """What `command` (a `mimzoo list ...` line) prints, run in this interpreter."""
    from click.testing import CliRunner

    from mimzoo.cli.main import cli

    argv = shlex.split(command)
    if argv[:2] != ["mimzoo", "list"]:
        raise SystemExit(f"README marker runs {command!r}; only 'mimzoo list ...' is allowed")
    result = CliRunner().invoke(cli, argv[1:], catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"{command!r} failed: {result.output}")
    return result.output


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
