"""The tracers current_tracer chooses from, each a plugin, and the files that choose.

A tracer plugin is a module with ``register_tracer(registry)``, which adds the
tracer's name and the factory that makes one for an instance (the kernel's
``register_tracer()``, called from each tracer's init).  PLUGINS lists them in
one place and the registry is built from that list when this package is first
imported: nothing registers itself as a side effect of being imported, so no
tracer is missing because a module happened not to be loaded.  ``nop`` (no
tracer) is always there.

The function profiler and the stack tracer are not tracers (the kernel's
function_profile_enabled and stack_tracer_enabled run beside current_tracer);
they live in this package because they are clients of the core as tracers are.
"""

from __future__ import annotations

from collections.abc import Callable

from fntrace.tracing.tracers import function, function_graph

TYPE_CHECKING = False
if TYPE_CHECKING:
    from fntrace.tracing.files import FileTable
    from fntrace.tracing.instance import Instance
    from fntrace.tracing.tracers.base import Tracer

__all__ = ["PLUGINS", "REGISTRY", "Factory", "TracerRegistry", "available", "get",
           "register_files", "set_current"]

Factory = Callable[["Instance"], "Tracer"]


class TracerRegistry:
    """current_tracer names and the factory of each (None: ``nop``, no tracer)."""

    def __init__(self) -> None:
        self._factories: dict[str, Factory | None] = {"nop": None}

    def register(self, name: str, factory: Factory) -> None:
        if name in self._factories:
            raise ValueError(f"tracer {name!r} is registered twice")
        self._factories[name] = factory

    def names(self) -> list[str]:
        """available_tracers, in registration order (nop first)."""
        return list(self._factories)

    def get(self, name: str) -> Factory | None:
        """The factory for current_tracer ``name`` (None for nop); ValueError if unknown."""
        try:
            return self._factories[name]
        except KeyError:
            raise ValueError(f"current_tracer: unknown tracer {name!r}; "
                             f"available: {' '.join(self._factories)}") from None


#: Every tracer plugin, in available_tracers order.
PLUGINS: tuple[Callable[[TracerRegistry], None], ...] = (
    function.register_tracer,
    function_graph.register_tracer,
)


def _build() -> TracerRegistry:
    registry = TracerRegistry()
    for plugin in PLUGINS:
        plugin(registry)
    return registry


REGISTRY = _build()


def available() -> list[str]:
    return REGISTRY.names()


def get(name: str) -> Factory | None:
    """The factory for current_tracer ``name`` (None for nop)."""
    return REGISTRY.get(name)


def set_current(inst: Instance, name: str) -> None:
    """current_tracer: stop the instance's tracer, start a new one of tracer ``name``."""
    factory = REGISTRY.get(name)  # raises ValueError for an unknown tracer
    with inst.lock:
        if inst.tracer is not None:
            inst.tracer.stop()
            inst.tracer = None
        if factory is not None:
            tracer = factory(inst)
            tracer.start()
            inst.tracer = tracer


def _stop(inst: Instance) -> None:
    """Closing: the tracer stops but is kept, so ``trace`` still renders in its format."""
    if inst.tracer is not None:
        inst.tracer.stop()


def register_files(table: FileTable) -> None:
    table.file("current_tracer",
               lambda inst: (inst.tracer.name if inst.tracer else "nop") + "\n",
               lambda inst, text, append: set_current(inst, text.strip()))
    table.file("available_tracers", lambda inst: " ".join(REGISTRY.names()) + "\n")
    table.on_close(_stop)
