"""Fault trials: hostile and corrupt weight files, through the CLI and through `mimzoo.load` in a fresh process.

Every trial passes one crafted file as `mimzoo export mae-vit-test --weights FILE -o OUT` (the CLI path
that takes a weights file and would write something) and asserts: exit code 1, one `error:` line
saying what is wrong and naming the fix, no traceback, no output folder, the input files untouched,
and for payloads that their marker never appeared and the process state they aimed at is unchanged.

Decisions these trials pin down:
- NaN or Inf weights are refused, not warned about (an encoder answering NaN passes every shape check).
- A pickle named ``.safetensors`` is refused (never unpickled), locally and from a Hub repo.
- A zip record that is compressed (torch.save never compresses) or declares more bytes than the
  file holds is refused before torch reads it: sizes stored in the archive are never trusted.
- A symlink is followed to a regular file (a path the user gave is theirs); devices, FIFOs and
  dangling links are refused without being read.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.faults.trial import expect_error, listing, run, snapshot

TINY = "mae-vit-test"
SAFE_FIX = ("copy it again",)
UNPICKLE_FIX = ("re-save its tensors with safetensors",)


class _RunsCode:
    """What a malicious checkpoint holds: unpickling it would run `touch MARKER`."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _ops(obj) -> bytes:
    import pickletools

    data = pickletools.optimize(pickle.dumps(obj, protocol=2))
    return data[2:-1]


def _build_on_global(module: str, name: str, attributes: dict) -> bytes:
    """GLOBAL module.name + BUILD (None, attributes): setattr on the class or function itself."""
    return (pickle.GLOBAL + f"{module}\n{name}\n".encode() + pickle.NONE + _ops(attributes) + pickle.TUPLE2
            + pickle.BUILD)


def _with_payload(src: Path, dst: Path, payload: bytes) -> None:
    """A working torch zip checkpoint whose top-level dict also holds the payload's object."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for info in z.infolist():
            data = z.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = data[:-1] + _ops("extra") + payload + pickle.SETITEM + pickle.STOP
            out.writestr(info, data)


def _safetensors_raw(header: dict | bytes, data: bytes, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Every crafted file, made once (read-only for the trials)."""
    import torch
    from safetensors.torch import save_file

    import mimzoo

    root = tmp_path_factory.mktemp("weights")
    marker = root / "PWNED"
    enc = mimzoo.load(TINY, pretrained=False)
    sd = {k: v.contiguous().clone() for k, v in enc.model.state_dict().items()}
    save_file(sd, str(root / "good.safetensors"))
    torch.save({"model": sd}, root / "good.pth")
    good = (root / "good.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    (root / "absurd-header.safetensors").write_bytes(_safetensors_raw(b"{}", b"", length=2**62))
    (root / "header-2gb.safetensors").write_bytes(_safetensors_raw(b'{"w":' + b" " * 64, b"", length=2**31 - 2))
    (root / "shape-lie.safetensors").write_bytes(
        _safetensors_raw({"w": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 16]}}, b"\0" * 16))
    (root / "dtype-lie.safetensors").write_bytes(
        _safetensors_raw({"w": {"dtype": "F64", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16))
    (root / "offset-lie.safetensors").write_bytes(
        _safetensors_raw({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 10**12]}}, b"\0" * 16))
    wrong = dict(sd)
    wrong["blocks.0.attn.qkv.weight"] = torch.zeros(7, 7)
    save_file(wrong, str(root / "wrong-shape.safetensors"))
    save_file({"foo.bar": torch.zeros(3)}, str(root / "wrong-layout.safetensors"))
    nan = dict(sd)
    nan["norm.weight"] = nan["norm.weight"].clone()
    nan["norm.weight"][0] = float("nan")
    save_file(nan, str(root / "nan.safetensors"))
    torch.save({"model": sd, "payload": _RunsCode(str(marker))}, root / "os-system.pth")
    (root / "os-system.bin").write_bytes(pickle.dumps(_RunsCode(str(marker)), protocol=2))
    _with_payload(root / "good.pth", root / "build-defaults.pth",
                  _build_on_global("torch._utils", "_rebuild_tensor_v2", {"__defaults__": ({"neg": True},)}))
    _with_payload(root / "good.pth", root / "build-counter.pth",
                  _build_on_global("collections", "Counter", {"most_common": 42}))
    (root / "build-counter.bin").write_bytes(b"\x80\x02" + pickle.EMPTY_DICT + _ops("x")
                                             + _build_on_global("collections", "Counter", {"elements": 1})
                                             + pickle.SETITEM + pickle.STOP)
    _zip_bomb(root / "good.pth", root / "zip-bomb.pth")
    _absurd_record(root / "good.pth", root / "absurd-record.pth")
    torch.save({"model": sd}, root / "pickle.safetensors")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(root / "scripted.pt"))
    (root / "empty.pth").write_bytes(b"")
    (root / "plain.pkl").write_bytes(pickle.dumps({"epoch": 3, "lr": [0.1, 0.01]}, protocol=2))
    (root / "a-folder").mkdir()
    os.symlink("/dev/zero", root / "to-dev-zero.safetensors")
    os.symlink(root / "gone.safetensors", root / "dangling.safetensors")
    return root


def _zip_bomb(src: Path, dst: Path) -> None:
    """A torch zip whose storage record is deflated: 64 MiB of zeros in a few KiB."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for info in z.infolist():
            data = z.read(info.filename)
            if info.filename.endswith("/data/0"):
                info.compress_type = zipfile.ZIP_DEFLATED
                data = b"\0" * (64 << 20)
            out.writestr(info, data)


def _absurd_record(src: Path, dst: Path) -> None:
    """A torch zip whose central directory says a record holds 2 GiB (the file holds a few KiB)."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        name = next(i.filename for i in z.infolist() if i.filename.endswith("/data/0")).encode()
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        n = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46: at + 46 + n]) == name:
            struct.pack_into("<II", data, at + 20, 0x7FFF0000, 0x7FFF0000)  # compressed, uncompressed size
            break
        at = data.find(b"PK\x01\x02", at + 4)
    assert at >= 0
    dst.write_bytes(bytes(data))


def _export(files: Path, tmp_path: Path, name: str, *extra: str):
    """`mimzoo export mae-vit-test --weights FILE`; asserts nothing was written and the inputs are unchanged."""
    before = snapshot(files)
    out = run("export", TINY, "--weights", files / name, "-o", tmp_path / "out", *extra, cwd=tmp_path,
              cache=tmp_path / "cache", timeout=120)
    assert not (tmp_path / "out").exists(), listing(tmp_path / "out")
    assert not any(p.startswith(".out") for p in listing(tmp_path)), listing(tmp_path)
    assert snapshot(files) == before
    assert not (files / "PWNED").exists()
    return out


CASES = [
    # (file, what the error says, the fix it names)
    ("truncated.safetensors", ("truncated or corrupt",), SAFE_FIX),
    ("absurd-header.safetensors", ("header too large",), SAFE_FIX),
    ("header-2gb.safetensors", ("as safetensors",), SAFE_FIX),
    ("shape-lie.safetensors", ("invalid shape, data type, or offset",), SAFE_FIX),
    ("dtype-lie.safetensors", ("invalid shape, data type, or offset",), SAFE_FIX),
    ("offset-lie.safetensors", ("invalid shape, data type, or offset",), SAFE_FIX),
    ("wrong-shape.safetensors", ("does not fit", "wrong shapes", "blocks.0.attn.qkv.weight"),
     ("pass a checkpoint made for this model",)),
    ("wrong-layout.safetensors", ("match none of the layouts",), ("pass a checkpoint of this model",)),
    ("nan.safetensors", ("NaN or Inf", "norm.weight: 1 of"), ("pass a checkpoint saved before the divergence",)),
    ("os-system.pth", ("refused to unpickle", "system"), UNPICKLE_FIX),
    ("os-system.bin", ("refused to unpickle", "system"), UNPICKLE_FIX),
    ("build-defaults.pth", ("refused to unpickle", "BUILD on a function"), UNPICKLE_FIX),
    ("build-counter.pth", ("refused to unpickle", "BUILD on a type"), UNPICKLE_FIX),
    ("build-counter.bin", ("refused to unpickle", "BUILD on a type"), UNPICKLE_FIX),
    ("zip-bomb.pth", ("compressed record",), ("re-save it with torch.save or safetensors",)),
    ("absurd-record.pth", ("larger than the file itself",), SAFE_FIX),
    ("pickle.safetensors", ("is named .safetensors but is a PyTorch zip checkpoint",),
     ("convert it with safetensors.torch.save_file",)),
    ("scripted.pt", ("TorchScript archive",), ("state_dict()",)),
    ("plain.pkl", ("is a plain pickle, not a torch.save checkpoint",), ("re-save its tensors with torch.save",)),
    ("empty.pth", ("neither safetensors nor a PyTorch checkpoint",), ("pass a .safetensors or .pth file",)),
    ("a-folder", ("checkpoint file not found", "a-folder/model.safetensors"), ("check the path",)),
    ("to-dev-zero.safetensors", ("is not a regular file",), ("pass a checkpoint file",)),
    ("dangling.safetensors", ("checkpoint file not found",), ("check the path",)),
]


@pytest.mark.parametrize("name,says,fix", CASES, ids=[c[0] for c in CASES])
def test_cli_refuses_a_bad_weights_file(files, tmp_path, name, says, fix):
    expect_error(_export(files, tmp_path, name), says=says, fix=fix)


def test_verbose_shows_the_cause_of_a_refusal(files, tmp_path):
    """With -v the chained cause is there for a bug report; the one-line error is still printed."""
    before = snapshot(files)
    out = run("-v", "export", TINY, "--weights", files / "build-defaults.pth", "-o", tmp_path / "out",
              cwd=tmp_path, cache=tmp_path / "cache", timeout=120)
    assert out.rc == 1 and any("refused to unpickle" in line for line in out.error_lines)
    assert not (tmp_path / "out").exists() and snapshot(files) == before


STATE = """
import collections, json, sys, torch
import mimzoo
from mimzoo.errors import WeightsError

def state():
    return {"counter": sorted(collections.Counter.__dict__), "defaults": repr(torch._utils._rebuild_tensor_v2.__defaults__),
            "layout": repr(torch.serialization._get_layout.__dict__)}

before, errors = state(), []
for path in sys.argv[2:]:
    try:
        mimzoo.load("mae-vit-test", weights=path)
        errors.append("accepted " + path)
    except WeightsError as e:
        errors.append(str(e))
enc = mimzoo.load("mae-vit-test", weights=sys.argv[1])
x = torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
with torch.no_grad():
    y = enc(x)
print(json.dumps({"before": before, "after": state(), "errors": errors, "y": y.flatten().tolist()}))
"""


def _python(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", STATE, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_python_api_refuses_payloads_and_the_process_stays_as_it_was(files):
    """`mimzoo.load(..., weights=...)`: each hostile file is a WeightsError; afterwards, in the same process,
    a good checkpoint gives exactly the embedding a fresh process gives, and the targeted state is unchanged."""
    hostile = [str(files / n) for n in ("build-defaults.pth", "build-counter.pth", "build-counter.bin",
                                        "os-system.pth", "os-system.bin")]
    fresh = _python(str(files / "good.pth"))
    after = _python(str(files / "good.pth"), *hostile)
    assert all(e.startswith("refused to unpickle") for e in after["errors"]), after["errors"]
    assert after["after"] == after["before"] == fresh["before"]
    assert after["y"] == fresh["y"]
    assert not (files / "PWNED").exists()


@pytest.fixture
def hub_with_pickle_named_safetensors(files):
    from tests.hub_standin import TOKEN, HubStandIn

    import mimzoo

    folder = files.parent / "hub-folder"
    if not folder.exists():
        mimzoo.save_pretrained(mimzoo.load(TINY, pretrained=False), folder)
    with HubStandIn({TOKEN: ("acme",)}) as hub:
        hub.put("acme/pickled", {"config.json": (folder / "config.json").read_bytes(),
                                 "model.safetensors": (files / "pickle.safetensors").read_bytes()})
        yield hub


def test_hub_repo_with_a_pickle_named_safetensors(files, tmp_path, hub_with_pickle_named_safetensors):
    from tests.hub_standin import client_env

    hub = hub_with_pickle_named_safetensors
    env = client_env(str(tmp_path / "cache" / "hf"), endpoint=hub.url)
    out = run("export", "hf-hub:acme/pickled", "-o", tmp_path / "out", cwd=tmp_path, timeout=120,
              env={**env, "MIMZOO_CACHE": str(tmp_path / "cache" / "mimzoo")})
    expect_error(out, says=("model.safetensors is named .safetensors but is a PyTorch zip checkpoint",),
                 fix=("convert it with safetensors.torch.save_file",))
    assert not (tmp_path / "out").exists() and not (files / "PWNED").exists()
