"""Reading official research checkpoints that carry config objects beside their tensors.

Many official checkpoints store their training config next to the weights: a yacs ``CfgNode``
(SimMIM, Swin, PySlowFast/MaskFeat), an argparse ``Namespace`` (MAE), an OmegaConf
``DictConfig``, numpy scalars for metrics. ``torch.load(weights_only=True)`` refuses some of them.
This module reads them with :class:`InertUnpickler`, whose one promise is: **loading any file,
accepted or refused, leaves the process exactly as it was.** Therefore

- a global resolves only if torch's own weights-only unpickler allows it (tensor rebuild
  functions, storages, dtypes, plain containers) or it is a known *config* class, which becomes
  :class:`InertConfig` (a plain dict that records its state and runs none of its code);
  Python-2 names (``__builtin__.set``, written by ``torch.save``'s protocol 2) are mapped with
  pickle's own table (``_compat_pickle``) before the allow-list is consulted;
- REDUCE / NEWOBJ call only allow-listed callables; INST, OBJ, EXT and out-of-band buffers are refused,
  and so is a tensor carrying backward hooks (they would run later, in a backward pass);
- BUILD, SETITEM(S), APPEND(S) and ADDITEMS change only objects this load created, of a few inert
  types (dicts, lists, sets, tensors, :class:`InertConfig`, ``argparse.Namespace``), never a class,
  function or module that a GLOBAL opcode brought in (that is how a crafted file would rewrite
  ``torch._utils._rebuild_tensor_v2.__defaults__`` or ``collections.Counter`` for the whole process);
  attributes a BUILD sets may not shadow the type's own attributes or be dunders.

It is built on the pure-Python ``pickle._Unpickler``: the plain-data opcodes are CPython's own,
every opcode that can reach code or existing objects is replaced here.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import pickle
import types
from collections import Counter, OrderedDict
from typing import Any

from .._deps import require

# Config classes replaced by InertConfig; their own code never runs.
INERT_CONFIG_CLASSES = frozenset(
    {
        "yacs.config.CfgNode",
        "omegaconf.dictconfig.DictConfig",
        "omegaconf.listconfig.ListConfig",
        "omegaconf.base.ContainerMetadata",
        "omegaconf.base.Metadata",
        "omegaconf.nodes.AnyNode",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.dtype",
        "numpy.dtypes.Float64DType",
        "numpy.dtypes.Float32DType",
        "numpy.dtypes.Int64DType",
        "typing.Any",
        "builtins.slice",
    }
)
# Plain-data classes allowed beside torch's list (official MAE stores its argparse Namespace; protocol 2 writes
# frozensets as a call).
EXTRA_CLASSES = {"argparse.Namespace": argparse.Namespace, "builtins.frozenset": frozenset}


class InertConfig(dict):
    """Stands in for a config object: keeps its items, constructor args and state as plain data, runs nothing."""

    __slots__ = ("args", "state")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args = args
        self.state: Any = None


class InertCheckpointError(pickle.UnpicklingError):
    """The pickle asks for something outside the allow-lists (a global, a call, a change to an existing object)."""


def map_python2_name(module: str, name: str) -> tuple[str, str]:
    """Python-2 global names as Python 3 spells them (pickle's own table, as ``fix_imports`` does)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _allowed_globals() -> dict[str, Any]:
    wou = require("torch._weights_only_unpickler")
    allowed = dict(wou._get_allowed_globals())
    allowed.update(EXTRA_CLASSES)
    allowed["torch._tensor._rebuild_from_type_v2"] = _checked_rebuild_from_type_v2
    return allowed


def _checked_rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    """torch's ``_rebuild_from_type_v2`` when ``func`` rebuilds a tensor and ``new_type`` is a tensor class."""
    torch = require("torch")
    wou = require("torch._weights_only_unpickler")
    rebuilders = wou._tensor_rebuild_functions() | {torch.Tensor, torch.nn.Parameter}
    if func not in rebuilders or not (isinstance(new_type, type) and issubclass(new_type, torch.Tensor)):
        raise InertCheckpointError(f"_rebuild_from_type_v2 with {func!r} -> {new_type!r} is not allowed")
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


def _refuse(what: str) -> Any:
    def load_refused(self: Any) -> None:
        raise InertCheckpointError(f"pickle opcode {what} is not allowed")

    return load_refused


class InertUnpickler(pickle._Unpickler):  # type: ignore[name-defined, misc]
    """A pickle reader that resolves only allow-listed globals and changes only what it created."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: Any, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._allowed = _allowed_globals()
        self._callables = {id(v): v for v in self._allowed.values()} | {id(InertConfig): InertConfig}
        self._foreign: dict[int, Any] = {}  # everything a GLOBAL brought in: never changed
        self.inert_seen: set[str] = set()  # config classes read as InertConfig

    # -- globals ---------------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        module, name = map_python2_name(module, name)
        key = f"{module}.{name}"
        if key in self._allowed:
            obj = self._allowed[key]
        elif key in INERT_CONFIG_CLASSES:
            self.inert_seen.add(key)
            obj = InertConfig
        else:
            raise InertCheckpointError(f"global '{key}' is not allowed")
        self._foreign[id(obj)] = obj
        return obj

    def _mutable(self, obj: Any, kinds: tuple[type, ...], what: str) -> Any:
        """``obj`` if it is one of ``kinds`` exactly and was made by this load, else refuse."""
        if id(obj) in self._foreign or type(obj) not in kinds:
            raise InertCheckpointError(f"{what} on a {type(obj).__name__} is not allowed")
        return obj

    def _check_callable(self, func: Any) -> None:
        if id(func) not in self._callables or func is not self._callables[id(func)]:
            raise InertCheckpointError(f"calling {func!r} is not allowed")

    # -- calls -----------------------------------------------------------------------------
    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        self._check_callable(func)
        if type(args) is not tuple:
            raise InertCheckpointError("REDUCE arguments must be a tuple")
        self.stack[-1] = _without_hooks(func(*args))

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, {}))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    def _new(self, cls: Any, args: Any, kwargs: Any) -> Any:
        torch = require("torch")
        self._check_callable(cls)
        if not isinstance(cls, type) or type(args) is not tuple or type(kwargs) is not dict:
            raise InertCheckpointError(f"NEWOBJ of {cls!r} is not allowed")
        if cls is torch.nn.Parameter:
            return torch.nn.Parameter(*args, **kwargs)
        if cls is InertConfig:
            return InertConfig(*args)
        return cls.__new__(cls, *args, **kwargs)

    # -- changes to objects ----------------------------------------------------------------
    def load_build(self) -> None:
        torch = require("torch")
        state = self.stack.pop()
        inst = self.stack[-1]
        self._mutable(inst, (torch.Tensor, torch.nn.Parameter, OrderedDict, Counter, argparse.Namespace,
                             InertConfig), "BUILD")
        if type(inst) is InertConfig:
            inst.state = state
        elif type(inst) is torch.Tensor:  # legacy format: (storage, offset, size, stride)
            if type(state) is not tuple:
                raise InertCheckpointError("BUILD of a tensor needs a tuple state")
            inst.set_(*state)
        elif type(inst) is torch.nn.Parameter:
            inst.__setstate__(state)
            _without_hooks(inst)
        else:
            _set_plain_attributes(inst, state)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._mutable(self.stack[-1], (dict, OrderedDict, Counter, InertConfig), "SETITEM")[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._mutable(self.stack[-1], (dict, OrderedDict, Counter, InertConfig), "SETITEMS")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def load_append(self) -> None:
        value = self.stack.pop()
        self._mutable(self.stack[-1], (list,), "APPEND").append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._mutable(self.stack[-1], (list,), "APPENDS").extend(items)

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._mutable(self.stack[-1], (set,), "ADDITEMS").update(items)

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.ADDITEMS[0]] = load_additems
    for _op in ("INST", "OBJ", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "READONLY_BUFFER"):
        dispatch[getattr(pickle, _op)[0]] = _refuse(_op)
    del _op


def _without_hooks(obj: Any) -> Any:
    """Refuse a tensor that comes with backward hooks: torch.save never writes any, and they would run
    during a later backward pass."""
    if getattr(obj, "_backward_hooks", None):
        raise InertCheckpointError("a tensor with backward hooks is not allowed")
    return obj


def _set_plain_attributes(inst: Any, state: Any) -> None:
    """BUILD on an OrderedDict / Counter / Namespace: data attributes only, nothing that shadows the type."""
    if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
        state = state[0]
    if state is None:
        return
    if type(state) not in (dict, OrderedDict):
        raise InertCheckpointError(f"BUILD state of a {type(inst).__name__} must be a dict")
    for key, value in state.items():
        if type(key) is not str or key.startswith("__") or hasattr(type(inst), key):
            raise InertCheckpointError(f"BUILD may not set attribute {key!r} of a {type(inst).__name__}")
        inst.__dict__[key] = value


def _make_pickle_module() -> types.ModuleType:
    mod = types.ModuleType("mimzoo_inert_pickle")
    mod.Unpickler = InertUnpickler  # type: ignore[attr-defined]
    mod.load = lambda f, **kw: InertUnpickler(f, **kw).load()  # type: ignore[attr-defined]
    mod.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    return mod


def loads(data: bytes) -> Any:
    """Unpickle bytes under the rules above (plain pickles without tensors)."""
    import io

    return InertUnpickler(io.BytesIO(data)).load()


def checkpoint_globals(path: str) -> list[str]:
    """The non-weights-only globals a zip checkpoint refers to (read, not executed)."""
    torch = require("torch")
    return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))


def is_torchscript(path: str) -> bool:
    """Whether a zip is a TorchScript archive (``torch.load`` would hand it to ``torch.jit.load``)."""
    torch = require("torch")
    ser = torch.serialization
    with ser._open_zipfile_reader(path) as reader:
        return bool(ser._is_torchscript_zip(reader))


def load_with_inert_configs(path: str) -> Any:
    """torch.load with :class:`InertUnpickler` (config objects become :class:`InertConfig`).

    TorchScript archives are refused first: ``torch.load`` would run ``torch.jit.load`` on them.
    """
    import zipfile

    torch = require("torch")
    if zipfile.is_zipfile(path) and is_torchscript(path):
        raise InertCheckpointError("it is a TorchScript archive (code, not only weights)")
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_make_pickle_module())
