"""Exceptions the workbench raises.

Every error names what was wrong and how to fix it. They all derive from :class:`InterpError`, so a
caller can catch the workbench's own failures apart from bugs elsewhere.
"""


class InterpError(Exception):
    """Base class of every error the workbench raises on purpose."""


class UnknownSiteError(InterpError, KeyError):
    """A site name that is not in the model's site list."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class InterventionError(InterpError, ValueError):
    """An intervention that cannot be applied (bad positions, heads, rows or shapes)."""


class HookNotFiredError(InterpError, RuntimeError):
    """A hook was registered at a site but the forward pass never reached it."""


class TokenizationError(InterpError, ValueError):
    """Prompts that cannot be tokenised as asked (e.g. clean/corrupt pairs of different lengths)."""


class ModelLoadError(InterpError, RuntimeError):
    """A model that cannot be loaded (missing package, unsupported architecture, bad path)."""


class ModelStateError(InterpError, RuntimeError):
    """The model is in a state that would give wrong numbers (e.g. training mode)."""


class InvalidArgumentError(InterpError, ValueError):
    """An argument a function cannot use (an unknown method, rule or path, a number out of range, a
    repeated entry); the message says which values it accepts."""


class GridMismatchError(InterpError, ValueError):
    """Results over different grids (axes, coordinates or shapes) given to be compared or combined."""


class UnsupportedModuleError(InterpError, TypeError):
    """A model module a method has no rule for (e.g. a normalisation layer type RelP does not know)."""


class GenerationError(InterpError, ValueError):
    """Generation settings that cannot work (no new tokens, a negative temperature, top_p outside (0, 1])."""


class BackendCapabilityError(InterpError, NotImplementedError):
    """A capability (starting a forward at a block, a KV cache, an attention implementation, a rule's
    modules) that the backend a model was wrapped from cannot provide; the message names both."""


class WorkerDeviceError(InterpError, RuntimeError):
    """A worker of an executor (a Ray actor) on which the run's device does not work; the message
    names the device, the worker's host and the fix."""


class MissingDependencyError(InterpError, ImportError):
    """An optional package a feature needs is not installed; the message gives the pip command."""
