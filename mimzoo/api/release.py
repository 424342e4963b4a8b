"""`mimzoo.release`: publish one of the project's models as its recipe (``exports/<model>.toml``) says.

The work lives in :mod:`mimzoo.hub.release`; this is the public entry point, like
:mod:`mimzoo.api.publish` is for publishing.
"""

from __future__ import annotations

from ..hub.release import ReleaseError, ReleaseGateError, ReleaseReport, StageResult, release

__all__ = ["ReleaseError", "ReleaseGateError", "ReleaseReport", "StageResult", "release"]
