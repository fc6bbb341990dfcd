"""Third-party detectors and dataset formats, found through Python entry points.

A package adds a detector by naming a :class:`~poisonguard.detectors.Detector` object under the
entry-point group ``poisonguard.detectors``, and a dataset format by naming a
:class:`~poisonguard.loaders.LoaderFormat` under ``poisonguard.loaders`` (see CONTRIBUTING.md
for a worked example). The registries (:data:`poisonguard.detectors.DETECTORS`,
:data:`poisonguard.loaders.FORMATS`) load them once, when they are first imported.

A plug-in is code the user chose to install, so it is imported like any other dependency; what
it registers is still checked: an entry point that cannot be imported, names the wrong kind of
object, or reuses a name already registered is left out with a warning on stderr (through the
log), and the reason is kept, so that asking for that name gives an error that says why
instead of "unknown detector".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TypeVar

__all__ = ["DETECTOR_GROUP", "LOADER_GROUP", "PluginFailure", "discover"]

logger = logging.getLogger(__name__)

DETECTOR_GROUP = "poisonguard.detectors"
LOADER_GROUP = "poisonguard.loaders"

Registered = TypeVar("Registered")


@dataclass(frozen=True)
class PluginFailure:
    """An entry point that was left out, and why."""

    group: str
    name: str
    target: str
    distribution: str
    reason: str

    def describe(self) -> str:
        return (
            f"plug-in {self.name!r} ({self.target}, from {self.distribution}) "
            f"was not loaded: {self.reason}"
        )


def discover(
    group: str,
    kind: type[Registered],
    taken: Callable[[str], bool],
    check: Callable[[Registered], None] = lambda _: None,
) -> tuple[list[tuple[Registered, str]], list[PluginFailure]]:
    """The objects registered under entry-point ``group``, each with the distribution that
    registered it (``"name version"``), in a stable order (by entry-point name, then target),
    and the entry points left out.

    Each entry point must name an instance of ``kind`` whose ``name`` is not ``taken`` (a
    built-in or an earlier plug-in) and passes ``check`` (which raises ``ValueError`` or
    ``TypeError`` to refuse it).
    """
    found: list[tuple[Registered, str]] = []
    failures: list[PluginFailure] = []
    names: set[str] = set()
    for point in sorted(entry_points(group=group), key=lambda p: (p.name, p.value)):
        try:
            obj = point.load()
            if not isinstance(obj, kind):
                raise TypeError(
                    f"it names a {type(obj).__name__}, not a {kind.__module__}.{kind.__name__}"
                )
            name = obj.name
            if taken(name) or name in names:
                raise ValueError(f"the name {name!r} is already registered")
            check(obj)
        except Exception as exc:  # a broken plug-in must not stop every scan
            failure = _failure(group, point, f"{type(exc).__name__}: {exc}")
            logger.warning("%s", failure.describe())
            failures.append(failure)
            continue
        names.add(name)
        found.append((obj, _distribution(point)))
    return found, failures


def _distribution(point: EntryPoint) -> str:
    if point.dist is None:
        return "an unknown distribution"
    return f"{point.dist.name} {point.dist.version}"


def _failure(group: str, point: EntryPoint, reason: str) -> PluginFailure:
    return PluginFailure(group, point.name, point.value, _distribution(point), reason)
