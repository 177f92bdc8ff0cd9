"""Where modules moved when refine/ was grouped into core/, formats/, stages/ and service/.

Code that imported a module by its old path (``refine.flagging``, ``refine.rundir``, …) keeps
working: importing the old name gives the module at its new place, the same module object.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any

#: old module (under refine.) -> where it lives now (under refine.)
MOVED = {
    "_atomic": "core._atomic",
    "_duckdb": "core._duckdb",
    "_heap": "core._heap",
    "_progress": "core._progress",
    "calibration": "attribution.calibration",
    "clustering": "stages.clustering",
    "collection": "stages.collection",
    "comparison": "stages.comparison",
    "decisions": "stages.emission.decisions",
    "defects": "stages.flagging.defects",
    "devices": "core.devices",
    "disk_matrix": "core.disk_matrix",
    "embeddings": "core.embeddings",
    "emission": "stages.emission",
    "evalset": "formats.evalset",
    "evidence": "stages.flagging.evidence",
    "evidence_text": "stages.flagging.evidence_text",
    "flagging": "stages.flagging",
    "flow_routes": "service.flow_routes",
    "flow_store": "service.flow_store",
    "grading": "stages.grading",
    "handoff": "stages.handoff",
    "layouts": "formats.layouts",
    "local_training": "stages.local_training",
    "outcomes": "stages.outcomes",
    "pair_index": "attribution.pair_index",
    "provenance": "core.provenance",
    "recipe": "stages.recipe",
    "records": "formats.records",
    "reporting": "stages.reporting",
    "review": "stages.review",
    "rundir": "core.rundir",
    "server": "service.server",
    "sources": "formats.sources",
    "text": "core.text",
    "training": "formats.training",
    "writers": "formats.writers",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.startswith("refine.") and fullname[len("refine."):] in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: Any) -> ModuleType:
        return importlib.import_module("refine." + MOVED[spec.name[len("refine."):]])

    def exec_module(self, module: ModuleType) -> None:
        """The module ran at its new place already."""


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
