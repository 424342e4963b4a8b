"""Bad checkpoint files: each is a clear WeightsError, and pickled code never runs."""

from __future__ import annotations

import importlib
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import mimzoo
from mimzoo.errors import WeightsError
from mimzoo.weights.read import read_checkpoint, sniff_format


class _RunsCode:
    """Unpickling this would call os.system: what a malicious checkpoint does."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"cls_token": torch.zeros(1)}, "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(WeightsError, match="refused to unpickle .*evil.pth.*system"):
        read_checkpoint(path)
    assert not marker.exists()


def test_legacy_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(_RunsCode(str(marker)), protocol=2))
    assert sniff_format(path) == "torch-pickle"
    with pytest.raises(WeightsError, match="refused to unpickle|cannot read"):
        mimzoo.load("mae-vit-test", weights=path)
    assert not marker.exists()


def test_official_checkpoint_with_args_namespace_is_allowed(tmp_path):
    import argparse

    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1e-3), "epoch": 799}, path)
    sd = read_checkpoint(path)
    assert list(sd) == ["w"]


def test_truncated_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"a": torch.randn(64, 64)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_checkpoint(path)
    path.write_bytes(data[:5])  # not even a header
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_checkpoint(path)


def test_truncated_torch_zip(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"a": torch.randn(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="checkpoint file not found: .*nope.pth; check the path"):
        mimzoo.load("mae-vit-test", weights=tmp_path / "nope.pth")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(WeightsError, match="neither safetensors nor a PyTorch checkpoint"):
        read_checkpoint(path)


def test_checkpoint_without_tensors(tmp_path):
    torch.save({"epoch": 3, "args": {"lr": 0.1}}, tmp_path / "empty.pth")
    with pytest.raises(WeightsError, match="contains no tensors"):
        read_checkpoint(tmp_path / "empty.pth")


def test_wrappers_and_module_prefix_are_unwrapped(tmp_path):
    t = torch.arange(3.0)
    for wrapper in ("model", "model_state", "state_dict"):
        torch.save({wrapper: {"module.blocks.0.w": t, "module.norm.w": t}, "epoch": 1}, tmp_path / "c.pth")
        assert sorted(read_checkpoint(tmp_path / "c.pth")) == ["blocks.0.w", "norm.w"]
    torch.save({"encoder": {"module.a": t}, "target_encoder": {"module.a": t}}, tmp_path / "multi.pth")
    assert sorted(read_checkpoint(tmp_path / "multi.pth")) == ["encoder.module.a", "target_encoder.module.a"]


FAKE_YACS = '''
import os
class CfgNode(dict):
    """Would leave a marker if any of its code ran while loading."""
    def __setstate__(self, state):
        open(os.environ["MARKER"], "w").close()
    def __setitem__(self, k, v):
        open(os.environ["MARKER"], "w").close()
        super().__setitem__(k, v)
'''


def _save_with_config(tmp_path, extra_payload: str = "") -> tuple:
    """Write an official-style checkpoint holding a yacs CfgNode (made where yacs exists)."""
    from helpers import run_py

    (tmp_path / "fake" / "yacs").mkdir(parents=True)
    (tmp_path / "fake" / "yacs" / "__init__.py").write_text("")
    (tmp_path / "fake" / "yacs" / "config.py").write_text(FAKE_YACS)
    path, marker = tmp_path / "simmim_pretrain.pth", tmp_path / "ran"
    code = f"""
        import os, torch
        from yacs.config import CfgNode
        cfg = dict.__new__(CfgNode); dict.__setitem__(cfg, "MODEL", "swin")
        state = {{"model": {{"encoder.w": torch.ones(2)}}, "config": cfg, "epoch": 799}}
        {extra_payload}
        torch.save(state, {str(path)!r})
    """
    r = run_py(code, pythonpath=[tmp_path / "fake"], env={"MARKER": str(tmp_path / "writer-marker")})
    assert r.returncode == 0, r.stderr
    return path, marker


def test_official_checkpoint_with_yacs_config_is_read_without_running_it(tmp_path, monkeypatch):
    path, marker = _save_with_config(tmp_path)
    monkeypatch.setenv("MARKER", str(marker))
    sd = read_checkpoint(path)  # yacs is not importable here, and its code must not run
    assert list(sd) == ["encoder.w"] and torch.equal(sd["encoder.w"], torch.ones(2))
    assert not marker.exists()


def test_config_objects_do_not_excuse_code(tmp_path):
    payload = 'import subprocess; state["x"] = __import__("functools").partial(subprocess.call, ["touch", "/tmp/x"])'
    path, _ = _save_with_config(tmp_path, extra_payload=payload)
    with pytest.raises(WeightsError, match="refused to unpickle .*functools.partial|refused to unpickle .*subprocess"):
        read_checkpoint(path)


# --- crafted pickles: loading any file, refused or accepted, leaves the process as it was -------------------------

import json
import pickletools
import zipfile


def _ops(obj) -> bytes:
    """The protocol-2 opcodes that push `obj` (no PROTO, no STOP, no memo writes)."""
    data = pickletools.optimize(pickle.dumps(obj, protocol=2))
    assert data[:2] == b"\x80\x02" and data[-1:] == b"."
    return data[2:-1]


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def build_on_global(module: str, name: str, attributes: dict, *, slots: bool = True) -> bytes:
    """GLOBAL module.name, BUILD: sets attributes on the class/function itself (with slot state: setattr;
    without: its __dict__) and leaves it on the stack. Only opcodes torch's own global lister knows."""
    state = pickle.NONE + _ops(attributes) + pickle.TUPLE2 if slots else _ops(attributes)
    return _global(module, name) + state + pickle.BUILD


PAYLOADS = {
    # every later checkpoint's tensors would come out negated (the neg bit of tensor metadata)
    "rebuild-defaults": build_on_global("torch._utils", "_rebuild_tensor_v2", {"__defaults__": ({"neg": True},)}),
    # collections.Counter changed for the whole process
    "counter-class": build_on_global("collections", "Counter", {"most_common": 42}),
    # the same through a Python-2 name (mapped before the allow-list)
    # the layout cache torch.load itself uses, through the function's __dict__
    "layout-cache": build_on_global("torch.serialization", "_get_layout", {"cache": {"evil": 1}}, slots=False),
}


def inject_into_zip(src, dst, payload: bytes) -> None:
    """A working torch zip checkpoint whose top-level dict also holds `payload`'s object under "extra"."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for info in z.infolist():
            data = z.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                assert data[:2] == b"\x80\x02" and data[-1:] == pickle.STOP
                data = data[:-1] + _ops("extra") + payload + pickle.SETITEM + pickle.STOP
            out.writestr(info, data)


def plain_pickle(payload: bytes) -> bytes:
    """A plain (non-zip) pickle of a dict holding the payload's object (what `pickle.dump(obj)` gives)."""
    return b"\x80\x02" + pickle.EMPTY_DICT + _ops("extra") + payload + pickle.SETITEM + pickle.STOP


FINGERPRINT = """
import collections, hashlib, json, sys, torch
from mimzoo.errors import WeightsError
from mimzoo.weights.read import read_checkpoint
outcomes = {}
for path in sys.argv[2:]:
    try:
        read_checkpoint(path)
        outcomes[path] = "accepted"
    except WeightsError as e:
        outcomes[path] = "refused: " + str(e)
sd = read_checkpoint(sys.argv[1])
print(json.dumps({
    "tensors": {k: [hashlib.sha256(t.resolve_neg().resolve_conj().contiguous().numpy().tobytes()).hexdigest(), t.is_neg(),
                    t.is_conj(), str(t.dtype), list(t.shape)] for k, t in sd.items()},
    "defaults": repr(torch._utils._rebuild_tensor_v2.__defaults__),
    "counter": sorted(collections.Counter.__dict__),
    "counter_most_common": repr(collections.Counter.most_common).split(" at ")[0],
    "layout": repr(torch.serialization._get_layout.__dict__),
    "outcomes": outcomes,
}))
"""


def _fingerprint(good, *hostile):
    """In a fresh process: load each hostile file (refused or not), then `good`; the tensors and the state
    the payloads aim at."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", FINGERPRINT, str(good), *map(str, hostile)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    good = root / "good.pth"
    torch.manual_seed(0)
    torch.save({"model": {"w": torch.randn(8, 4), "b": torch.arange(5, dtype=torch.int64)}, "epoch": 3}, good)
    files = []
    for name, payload in PAYLOADS.items():
        inject_into_zip(good, root / f"{name}.pth", payload)
        (root / f"{name}.bin").write_bytes(plain_pickle(payload))
        files += [root / f"{name}.pth", root / f"{name}.bin"]
    return good, files


def test_hostile_checkpoints_leave_the_process_as_it_was(hostile_files):
    good, hostile = hostile_files
    fresh = _fingerprint(good)
    after = _fingerprint(good, *hostile)
    refused = {p: o for p, o in after["outcomes"].items() if o.startswith("refused")}
    assert set(refused) == {str(p) for p in hostile}, after["outcomes"]  # none is accepted, none half-applied
    assert all("only load it if you trust it" in o for o in refused.values())
    for key in ("tensors", "defaults", "counter", "counter_most_common", "layout"):
        assert after[key] == fresh[key], key
    assert fresh["defaults"] == "(None,)" and not any(v[1] for v in fresh["tensors"].values())


def test_refusals_name_what_was_asked(hostile_files, tmp_path):
    _, hostile = hostile_files
    for path in hostile:
        with pytest.raises(WeightsError, match=r"refused to unpickle .*BUILD on a (function|type)"):
            read_checkpoint(path)


@pytest.mark.parametrize("payload,what", [
    # BUILD on a fresh OrderedDict may not shadow its methods (later code calling .keys() would call the file's object)
    (_global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.NEWOBJ + _ops({"keys": 1}) + pickle.BUILD
     + pickle.POP, "attribute 'keys'"),
    # SETITEM / APPEND only on containers this load made
    (_global("collections", "Counter") + _ops("k") + _ops(1) + pickle.SETITEM + pickle.POP, "SETITEM on a type"),
    (_global("torch._utils", "_rebuild_tensor_v2") + _ops(1) + pickle.APPEND + pickle.POP, "APPEND on a function"),
    # dunder attributes are never set
    (_global("argparse", "Namespace") + pickle.EMPTY_TUPLE + pickle.NEWOBJ + _ops({"__class__": 1}) + pickle.BUILD
     + pickle.POP, "attribute '__class__'"),
    # a call of something not on the list
    (_global("builtins", "setattr") + _ops(("a", "b", 1)) + pickle.REDUCE + pickle.POP, "global 'builtins.setattr'"),
    (_global("__builtin__", "getattr") + _ops(("a", "b")) + pickle.REDUCE + pickle.POP, "global 'builtins.getattr'"),
    # protocol-0/1 instantiation and extension codes are not read at all
    (pickle.MARK + pickle.OBJ, "opcode OBJ"),
    (pickle.EXT1 + b"\x01", "opcode EXT1"),
    # _rebuild_from_type_v2 rebuilds tensors only
    (_global("torch._tensor", "_rebuild_from_type_v2") + pickle.MARK + _global("collections", "Counter")
     + _global("torch", "Tensor") + pickle.EMPTY_TUPLE + pickle.EMPTY_DICT + pickle.TUPLE + pickle.REDUCE + pickle.POP,
     "_rebuild_from_type_v2"),
])
def test_inert_unpickler_refuses(payload, what):
    from mimzoo.weights.unpickle import InertCheckpointError, loads

    with pytest.raises(InertCheckpointError, match=what):
        loads(b"\x80\x02" + payload + pickle.NONE + pickle.STOP)


def test_inert_unpickler_reads_plain_data():
    from collections import Counter, OrderedDict

    from mimzoo.weights.unpickle import loads

    data = {"a": [1, 2.5, "x", b"y", None, True], "s": {1, 2}, "f": frozenset({3}), "c": Counter("aab"),
            "o": OrderedDict(b=1), "t": (1, (2,)), "big": 2**70}
    for proto in (2, 4, 5):
        assert loads(pickle.dumps(data, protocol=proto)) == data


def test_user_safe_globals_survive_a_load(tmp_path):
    """mimzoo does not touch torch's process-wide safe-globals list (it used to remove a class the user added)."""
    import argparse

    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1e-3)}, path)
    # torch.load imports torch.distributed.tensor on first use once torch.distributed is loaded (as an
    # earlier test may have done), and that import adds the DTensor classes to the list: do it up front,
    # so only mimzoo's own changes are under test
    if torch.distributed.is_available():
        importlib.import_module("torch.distributed.tensor")
    before = list(torch.serialization.get_safe_globals())
    torch.serialization.add_safe_globals([argparse.Namespace])
    try:
        assert list(read_checkpoint(path)) == ["w"]
        assert argparse.Namespace in torch.serialization.get_safe_globals()
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)
    assert list(read_checkpoint(path)) == ["w"]
    assert set(map(repr, torch.serialization.get_safe_globals())) == set(map(repr, before))  # order is not kept by torch


def test_torchscript_archive_is_refused_not_run(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(WeightsError, match="TorchScript archive .*state_dict"):
        read_checkpoint(path)
    from mimzoo.weights.unpickle import InertCheckpointError, load_with_inert_configs

    with pytest.raises(InertCheckpointError, match="TorchScript"):
        load_with_inert_configs(str(path))


# --- SimMIM's save_checkpoint: a yacs CfgNode (with sets in its __dict__) pickled at protocol 2 -------------------

YACS_SHAPED = '''
import os


class CfgNode(dict):
    """Shaped like yacs.config.CfgNode: a dict with attribute access, its flags in __dict__ (a set among them).
    Any of its code running while a checkpoint is *read* leaves a marker."""

    IMMUTABLE, DEPRECATED_KEYS, RENAMED_KEYS, NEW_ALLOWED = ("__immutable__", "__deprecated_keys__",
                                                            "__renamed_keys__", "__new_allowed__")

    def __init__(self, init_dict=None, key_list=None, new_allowed=False):
        init_dict = {} if init_dict is None else init_dict
        for k, v in init_dict.items():
            if type(v) is dict:
                init_dict[k] = CfgNode(v, new_allowed=new_allowed)
        super().__init__(init_dict)
        self.__dict__[CfgNode.IMMUTABLE] = False
        self.__dict__[CfgNode.DEPRECATED_KEYS] = {"MODEL.OLD_KEY"}
        self.__dict__[CfgNode.RENAMED_KEYS] = {"EXAMPLE.OLD.KEY": ("EXAMPLE.NEW.KEY", "renamed")}
        self.__dict__[CfgNode.NEW_ALLOWED] = new_allowed

    def __getattr__(self, name):
        if name in self:
            return self[name]
        raise AttributeError(name)

    def __setattr__(self, name, value):
        self._ran()
        self[name] = value

    def __setstate__(self, state):
        self._ran()

    def __setitem__(self, key, value):
        if "MARKER" in os.environ and os.environ.get("READING"):
            self._ran()
        super().__setitem__(key, value)

    def _ran(self):
        if os.environ.get("READING"):
            open(os.environ["MARKER"], "w").close()

    def freeze(self):
        self.__dict__[CfgNode.IMMUTABLE] = True
        for v in self.values():
            if isinstance(v, CfgNode):
                v.freeze()
'''

SIMMIM_SAVE = """
import sys, torch
from yacs.config import CfgNode
config = CfgNode({"MODEL": {"TYPE": "swin", "NAME": "simmim_pretrain"}, "DATA": {"IMG_SIZE": 192, "MASK_RATIO": 0.6},
                  "AMP_OPT_LEVEL": "O1", "OUTPUT": "output/simmim_pretrain"})
config.freeze()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
model(torch.randn(2, 4)).sum().backward()
optimizer.step()
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
# as microsoft/SimMIM utils.save_checkpoint builds it
save_state = {'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'lr_scheduler': lr_scheduler.state_dict(),
              'max_accuracy': 0.0, 'epoch': 99, 'config': config}
torch.save(save_state, sys.argv[1])
torch.save(model.state_dict(), sys.argv[2])
"""


def test_simmim_checkpoint_with_yacs_config_loads(tmp_path, monkeypatch):
    import subprocess
    import sys

    fake = tmp_path / "fake"
    (fake / "yacs").mkdir(parents=True)
    (fake / "yacs" / "__init__.py").write_text("")
    (fake / "yacs" / "config.py").write_text(YACS_SHAPED)
    ckpt, plain, marker = tmp_path / "ckpt_epoch_99.pth", tmp_path / "weights.pth", tmp_path / "ran"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]),
           "MARKER": str(marker)}
    r = subprocess.run([sys.executable, "-c", SIMMIM_SAVE, str(ckpt), str(plain)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = zipfile.ZipFile(ckpt).read("ckpt_epoch_99/data.pkl")
    assert data[:2] == b"\x80\x02" and b"yacs.config\nCfgNode\n" in data and b"__builtin__\nset\n" in data
    monkeypatch.setenv("MARKER", str(marker))
    monkeypatch.setenv("READING", "1")

    sd = read_checkpoint(ckpt)  # yacs is not importable here, and its code must not run
    want = torch.load(plain, weights_only=True)
    assert list(sd) == list(want) and all(torch.equal(sd[k], want[k]) for k in want)
    assert not marker.exists()

    from mimzoo.weights.unpickle import InertConfig, load_with_inert_configs

    full = load_with_inert_configs(str(ckpt))
    cfg = full["config"]
    assert type(cfg) is InertConfig and type(cfg["MODEL"]) is InertConfig
    assert cfg["MODEL"]["TYPE"] == "swin" and cfg["DATA"]["MASK_RATIO"] == 0.6 and cfg["AMP_OPT_LEVEL"] == "O1"
    assert cfg.state["__deprecated_keys__"] == {"MODEL.OLD_KEY"} and cfg.state["__immutable__"] is True
    assert full["epoch"] == 99 and full["optimizer"]["param_groups"][0]["lr"] == 1e-4
    assert not marker.exists()


def test_python2_names_are_mapped_before_the_allow_list():
    from mimzoo.weights.unpickle import InertCheckpointError, loads, map_python2_name

    assert map_python2_name("__builtin__", "set") == ("builtins", "set")
    assert map_python2_name("copy_reg", "_reconstructor") == ("copyreg", "_reconstructor")
    assert loads(b"\x80\x02" + _global("__builtin__", "set") + _ops(([1, 2],)) + pickle.REDUCE + pickle.STOP) == {1, 2}
    # mapping never widens the list: the mapped name is checked like any other
    with pytest.raises(InertCheckpointError, match="copyreg._reconstructor"):
        loads(b"\x80\x02" + _global("copy_reg", "_reconstructor") + pickle.STOP)


def test_tensor_with_backward_hooks_is_refused(tmp_path):
    """torch.save never writes hooks; a checkpoint that attaches one (here `set`) to a weight is refused,
    whichever reader (torch's weights-only one, or mimzoo's) reads it."""
    import argparse
    import types
    from collections import OrderedDict

    class Hooked:
        pass

    class HookPickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, Hooked):
                return (torch._utils._rebuild_parameter, (torch.ones(2), False, OrderedDict({0: set})))
            return NotImplemented

    module = types.SimpleNamespace(__name__="hook_pickle", Pickler=HookPickler, dump=pickle.dump)
    for extra, name in (({}, "plain.pth"), ({"args": argparse.Namespace(lr=1)}, "with-args.pth")):
        torch.save({"model": {"w": Hooked()}, **extra}, tmp_path / name, pickle_module=module)
        with pytest.raises(WeightsError, match="backward hooks"):
            read_checkpoint(tmp_path / name)


def test_legacy_format_and_numpy_metrics_with_config_objects_load(tmp_path):
    """The inert reader also serves torch's legacy (non-zip) format, and numpy scalars become inert data."""
    import argparse

    import numpy as np

    m = torch.nn.Linear(3, 2)
    torch.save({"model": m.state_dict(), "args": argparse.Namespace(lr=1)}, tmp_path / "legacy.pth",
               _use_new_zipfile_serialization=False)
    torch.save({"model": m.state_dict(), "best_acc": np.float64(0.7), "args": argparse.Namespace(lr=1)},
               tmp_path / "numpy.pth")
    for name in ("legacy.pth", "numpy.pth"):
        sd = read_checkpoint(tmp_path / name)
        assert sorted(sd) == ["bias", "weight"] and all(torch.equal(sd[k], m.state_dict()[k]) for k in sd)


def _mutations(data: bytes, rng, n: int):
    for _ in range(n):
        d = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            i, op = rng.randrange(len(d)), rng.random()
            if op < 0.6:
                d[i] = rng.randrange(256)
            elif op < 0.8:
                del d[i:i + rng.randint(1, 8)]
            else:
                d[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        yield bytes(d)


def test_mutated_pickles_are_one_clear_error(tmp_path):
    """Random byte flips in a checkpoint's pickle (both readers, zip and legacy format): the only outcomes
    are a clean load or a WeightsError, never an IndexError or KeyError escaping as a traceback."""
    import argparse
    import random

    rng = random.Random(0)
    m = torch.nn.Linear(3, 2)
    for i, extra in enumerate(({}, {"args": argparse.Namespace(lr=1)})):
        src = tmp_path / f"good{i}.pth"
        torch.save({"model": m.state_dict(), "epoch": 3, **extra}, src)
        with zipfile.ZipFile(src) as z:
            infos = z.infolist()
            blobs = {info.filename: z.read(info.filename) for info in infos}
        pkl = next(n for n in blobs if n.endswith("data.pkl"))
        for data in _mutations(blobs[pkl], rng, 120):
            with zipfile.ZipFile(tmp_path / "m.pth", "w") as out:
                for info in infos:
                    out.writestr(info, data if info.filename == pkl else blobs[info.filename])
            try:
                read_checkpoint(tmp_path / "m.pth")
            except WeightsError:
                pass
        torch.save({"model": m.state_dict(), **extra}, src, _use_new_zipfile_serialization=False)
        for data in _mutations(src.read_bytes(), rng, 60):
            (tmp_path / "m.bin").write_bytes(data)
            try:
                read_checkpoint(tmp_path / "m.bin")
            except WeightsError:
                pass
