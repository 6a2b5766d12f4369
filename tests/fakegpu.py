"""A simulated GPU for machines without one: run the tests with their models on ``fakegpu``.

    INTERP_TEST_DEVICE=fakegpu pytest -p tests.fakegpu -m "not slow" tests/...

The shared fixtures (``tiny``, ``tiny64``, ``smollm``: see ``tests/conftest.py``) then load their
models on a device named ``fakegpu``. Its tensors report that device and hold CPU data; every
operation on them runs on CPU through a dispatch mode that first refuses what CUDA refuses:

* an operation mixing device tensors with CPU tensors that are not 0-dim scalars;
* a CPU tensor indexed by device indices, or written with device values (a device tensor indexed by
  CPU indices is allowed, as on CUDA);
* a CPU ``torch.Generator`` drawing device randomness;
* ``.numpy()`` (and so ``np.asarray``) of a device tensor.

Everything else computes the CPU numbers, so a test passes here when it would pass on CPU and makes
no operation a GPU forbids. What it cannot show: numerical differences of GPU kernels, mixed
precision (autocast is CUDA-only), NCCL. ``FAKEGPU_FORCE=1`` also moves every model loaded with
``device="cpu"`` (the default) onto the device, which runs the methods of tests whose models are not
the shared fixtures; their own CPU references then differ in device, so read those failures for
frames inside ``interp/``. ``FAKEGPU_REPORT=path`` appends one line per failure: the test, the error
and the innermost frame in ``interp/`` or ``tests/``.

The device is PyTorch's ``PrivateUse1`` backend registered from Python
(``torch.utils.backend_registration``), which provides the device guards that indexing and scalar
conversion need; a CUDA device cannot be simulated on a CPU-only build.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

NAME = "fakegpu"
DEVICE = f"{NAME}:0"  # a torch device once the backend is registered (pytest_configure)
CROSS_DEVICE = {"_to_copy", "copy_", "_copy_from", "_copy_from_and_resize", "lift_fresh", "lift_fresh_copy", "set_",
                "_local_scalar_dense", "is_same_size"}
INDEX = {"index", "_unsafe_index"}
INDEX_PUT = {"index_put_", "index_put", "_index_put_impl_", "_unsafe_index_put"}
_DEVICE_GENERATOR_SEEDS: set[int] = set()


class DeviceMixError(RuntimeError):
    """An operation a GPU would refuse."""


class FakeGPUTensor(torch.Tensor):
    """A tensor on the simulated device: reports ``fakegpu:0``, holds its data in ``elem`` on CPU."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor) -> FakeGPUTensor:
        made = torch.Tensor._make_wrapper_subclass(
            cls, elem.size(), strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=torch.device(DEVICE), requires_grad=elem.requires_grad,
        )
        made.elem = elem
        return made

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return _dispatch(func, args, kwargs)

    def __repr__(self, *, tensor_contents: Any = None) -> str:
        return f"FakeGPUTensor({self.elem!r})"

    def numpy(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"can't convert {NAME}:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first.")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        return self.numpy()

    def tolist(self) -> Any:
        return self.elem.tolist()

    def item(self) -> Any:
        return self.elem.item()

    def __float__(self) -> float:
        return float(self.elem)

    def __int__(self) -> int:
        return int(self.elem)

    def __bool__(self) -> bool:
        return bool(self.elem)

    def __index__(self) -> int:
        return self.elem.__index__()

    def __format__(self, spec: str) -> str:
        return self.elem.__format__(spec)

    def __hash__(self) -> int:
        return id(self)

    def __getitem__(self, index: Any) -> Any:
        return super().__getitem__(_lists_as_tensors(index))

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(_lists_as_tensors(index), value)


def _lists_as_tensors(index: Any) -> Any:
    """Python lists of an index as CPU tensors (torch converts them below the dispatch mode)."""
    if isinstance(index, list):
        return torch.tensor(index)
    if isinstance(index, tuple):
        return tuple(torch.tensor(i) if isinstance(i, list) else i for i in index)
    return index


def _on_device(x: Any) -> bool:
    return isinstance(x, FakeGPUTensor)


def _check(func: Any, name: str, args: Any, kwargs: dict, tensors: list[torch.Tensor]) -> None:
    """Raise :class:`DeviceMixError` where CUDA would refuse the operation."""
    on_device = [t for t in tensors if _on_device(t)]
    device = kwargs.get("device")
    runs_on_device = torch.device(device).type == NAME if device is not None else bool(on_device)
    generator = kwargs.get("generator")
    if generator is not None and runs_on_device and generator.initial_seed() not in _DEVICE_GENERATOR_SEEDS:
        raise DeviceMixError(f"{func}: expected a {NAME} generator, got a cpu one")
    if not on_device or name in CROSS_DEVICE:
        return
    if name in INDEX or name in INDEX_PUT:
        target = args[0]
        indices = [i for i in args[1] if isinstance(i, torch.Tensor)]
        if _on_device(target):
            if name in INDEX_PUT and not _on_device(args[2]) and args[2].dim() > 0:
                raise DeviceMixError(f"{func}: values on cpu {tuple(args[2].shape)} written into a {NAME} tensor")
        elif any(_on_device(i) for i in indices) or (name in INDEX_PUT and _on_device(args[2])):
            raise DeviceMixError(f"{func}: a cpu tensor indexed or written by {NAME} tensors")
        return
    cpu = [t for t in tensors if not _on_device(t) and t.dim() > 0]
    if cpu:
        shapes = [(tuple(t.shape), NAME if _on_device(t) else "cpu") for t in tensors]
        raise DeviceMixError(f"expected all tensors on one device: {func} got {shapes}")


def _dispatch(func: Any, args: Any, kwargs: Any) -> Any:
    """Check the operation, run it on the CPU data, and put the results on the device where it ran."""
    kwargs = dict(kwargs or {})
    tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    name = func.overloadpacket.__name__
    _check(func, name, args, kwargs, tensors)
    device = kwargs.get("device")
    if device is not None and torch.device(device).type == NAME:
        kwargs["device"] = torch.device("cpu")
    unwrap = lambda x: x.elem if _on_device(x) else x  # noqa: E731
    out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs))
    returns = func._schema.returns
    if len(returns) == 1 and returns[0].alias_info is not None and returns[0].alias_info.is_write:
        for argument, value in zip(func._schema.arguments, args):  # in place: the written argument itself
            if argument.alias_info is not None and argument.alias_info.is_write:
                return value
        return kwargs.get("out", out)
    on_device = torch.device(device).type == NAME if device is not None else any(_on_device(t) for t in tensors)
    if not on_device:
        return out
    return tree_map(lambda x: FakeGPUTensor(x) if isinstance(x, torch.Tensor) and not _on_device(x) else x, out)


class FakeGPUMode(TorchDispatchMode):
    """Sees every operation, factory functions included (``torch.zeros(..., device="fakegpu")``)."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return _dispatch(func, args, kwargs)


def _patch_torch() -> None:
    """Register the device, and route what torch builds below the dispatch mode through CPU."""
    from torch.utils.backend_registration import _setup_privateuseone_for_python_backend

    _setup_privateuseone_for_python_backend(NAME)
    for factory in ("tensor", "as_tensor"):
        original = getattr(torch, factory)

        def made(data: Any, *args: Any, device: Any = None, _original: Any = original, **kwargs: Any) -> torch.Tensor:
            if device is not None and torch.device(device).type == NAME:
                return _original(data, *args, **kwargs).to(DEVICE)
            return _original(data, *args, device=device, **kwargs)

        setattr(torch, factory, made)
    cpu_generator = torch.Generator

    class Generator(cpu_generator):  # type: ignore[misc, valid-type]
        """A CPU generator standing for a device one; the dispatch mode knows it by its seed."""

        def __new__(cls, device: Any = "cpu") -> Generator:
            on_device = torch.device(device).type == NAME
            made = super().__new__(cls, "cpu" if on_device else device)
            made.on_device = on_device
            if on_device:
                _DEVICE_GENERATOR_SEEDS.add(made.initial_seed())
            return made

        def manual_seed(self, seed: int) -> Generator:
            super().manual_seed(seed)
            if self.on_device:
                _DEVICE_GENERATOR_SEEDS.add(self.initial_seed())
            return self

    torch.Generator = Generator  # type: ignore[misc]


def _accept_the_device() -> None:
    """Let the workbench's device checks take ``fakegpu`` (and, with FAKEGPU_FORCE, put models on it)."""
    import interp.config
    import interp.models

    for module in (interp.config, interp.models):
        listed = module.available_devices
        module.available_devices = lambda listed=listed: [*listed(), NAME, f"{NAME}:0"]
    config_check = interp.config.check_device

    def check_config_device(name: str, allow_auto: bool = False, here: bool = True) -> str:
        return name if str(name).startswith(NAME) else config_check(name, allow_auto, here)

    interp.config.check_device = check_config_device
    if os.environ.get("FAKEGPU_FORCE"):
        model_check = interp.models.check_device

        def check_model_device(device: Any) -> torch.device:
            checked = model_check(device)  # a bad name keeps its error
            return torch.device(DEVICE) if checked.type == "cpu" else checked

        interp.models.check_device = check_model_device


def pytest_configure(config: pytest.Config) -> None:
    _patch_torch()
    FakeGPUMode().__enter__()
    _accept_the_device()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    path = os.environ.get("FAKEGPU_REPORT")
    if path is None or call.excinfo is None or outcome.get_result().passed or call.when == "teardown":
        return
    where = "?"
    for entry in call.excinfo.traceback:
        file = str(entry.path)
        if ("/interp/" in file or "/tests/" in file) and not file.endswith("fakegpu.py"):
            where = f"{file}:{entry.lineno + 1}"
    lines = str(call.excinfo.value).splitlines()
    with open(path, "a") as handle:
        handle.write(f"{item.nodeid}\t{call.excinfo.typename}\t{where}\t{lines[0][:200] if lines else ''}\n")
