"""Reading official research checkpoints that carry config objects beside their tensors.

Many official checkpoints store their training config next to the weights: a yacs ``CfgNode``
(SimMIM, Swin, PySlowFast/MaskFeat), an OmegaConf ``DictConfig``, numpy scalars for metrics.
``torch.load(weights_only=True)`` refuses such files as a whole. This module reads them with a
restricted unpickler that

- resolves only the globals torch's own weights-only unpickler allows (tensor rebuild functions,
  storages, dtypes, plain containers), and
- replaces a short list of known *configuration* classes by :class:`InertConfig`, a plain dict that
  records their state and runs none of their code.

Any other global (``os.system``, ``builtins.eval``, an arbitrary class) makes the load fail, so a
file that tries to run code is still refused. The caller lists the file's globals first (with
torch's ``get_unsafe_globals_in_checkpoint``) and only comes here when every one is allowed.
"""

from __future__ import annotations

import pickle
import types
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


class InertConfig(dict):
    """Stands in for a config object: keeps its items and state as plain data, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class InertCheckpointError(pickle.UnpicklingError):
    """A global outside both allow-lists was met."""


def _allowed_globals() -> dict[str, Any]:
    wou = require("torch._weights_only_unpickler")
    return dict(wou._get_allowed_globals())


def _make_pickle_module() -> types.ModuleType:
    allowed = _allowed_globals()

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            key = f"{module}.{name}"
            if key in allowed:
                return allowed[key]
            if key in INERT_CONFIG_CLASSES:
                return InertConfig
            raise InertCheckpointError(f"global '{key}' is not allowed")

    mod = types.ModuleType("mimzoo_restricted_pickle")
    mod.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
    mod.load = lambda f, **kw: RestrictedUnpickler(f, **kw).load()  # type: ignore[attr-defined]
    mod.__name__ = "mimzoo_restricted_pickle"
    return mod


def checkpoint_globals(path: str) -> list[str]:
    """The non-weights-only globals a zip checkpoint refers to (read, not executed)."""
    torch = require("torch")
    return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))


def load_with_inert_configs(path: str) -> Any:
    """torch.load with the restricted unpickler above (config objects become InertConfig)."""
    torch = require("torch")
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_make_pickle_module())
