"""``compile=true``: the model's backbone compiled with ``torch.compile``, or left as it is, with
a warning naming the reason, where it cannot be compiled.

The backbone is compiled in place, not wrapped in an ``OptimizedModule``: its parameters keep
their names (no ``_orig_mod.`` prefix), so a checkpoint of a compiled run loads into an
uncompiled one and the other way round. In place as :meth:`torch.nn.Module.compile` does it (the
compiled call in the module's ``_compiled_call_impl``, which pickling and copies drop), but of
the backbone's ``forward``: ``Module.compile`` compiles ``Module._call_impl``, a frame in
dynamo's skip list, and in torch 2.13 ran entirely uncompiled without a word. The backbone's own
hooks are therefore not called (vidistill sets none; its submodules' run as traced).

``torch.compile`` compiles lazily, at the first call of each new input kind (shapes, train or
eval mode), and that is where most failures show: an operation dynamo cannot trace, no C
compiler for inductor's kernels, a backend that breaks. Such a failure is caught at the call: the
backbone goes on uncompiled (a warning says why), and the step that hit it runs uncompiled too,
so the run does not stop.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

# The C compilers inductor's C++ and Triton kernels can be built with, as it looks them up.
_C_COMPILERS = ("cc", "gcc", "clang", "c++", "g++", "clang++", "cl")


def compile_backbone(
    model: nn.Module, backend: str | Callable[..., Any] = "inductor", mode: str | None = None
) -> bool:
    """Compile ``model.backbone`` in place; True if it is compiled (the first call may still fall
    back, see the module's docstring), False if it runs uncompiled, with a warning why.
    ``backend``: a name (``inductor``, ``aot_eager``, ``eager``) or a dynamo backend function."""
    backbone = model.backbone
    reason = cannot_compile(backend)
    if reason is None:
        try:
            compiled = torch.compile(backbone.forward, backend=backend, mode=mode)
        except Exception as error:  # noqa: BLE001 - any failure leaves the model uncompiled
            reason = f"torch.compile raised {_describe(error)}"
    if reason is not None:
        _warn(reason)
        return False
    backbone._compiled_call_impl = _falling_back(backbone, compiled)
    log.info("compile=true: the backbone is compiled (backend %s, mode %s)", backend, mode)
    return True


def cannot_compile(backend: str | Callable[..., Any]) -> str | None:
    """Why ``torch.compile`` with ``backend`` cannot work here, None when nothing is known
    against it (the first call can still fail)."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if backend != "inductor":  # eager, aot_eager, ... build no kernels
        return None
    if sys.platform == "win32" and not shutil.which("cl"):
        return "inductor on Windows needs the MSVC compiler (cl.exe) on PATH"
    compilers = [os.environ.get("CC"), os.environ.get("CXX"), *_C_COMPILERS]
    if not any(shutil.which(name) for name in compilers if name):
        return "no C compiler found for inductor's kernels (install gcc or clang, or set CC)"
    return None


def _falling_back(module: nn.Module, compiled: Callable[..., Any]) -> Callable[..., Any]:
    """``compiled`` (the module's compiled call), which on its first failure is dropped: the
    module and this call go on uncompiled."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - a real error of the model raises again below
            module._compiled_call_impl = None
            _warn(f"the compiled backbone raised {_describe(error)}")
            return module._call_impl(*args, **kwargs)

    return call


def _describe(error: BaseException) -> str:
    """The error's type and its message's first line, and those of its root cause (dynamo wraps
    a backend's error in its own, whose first line names only the backend)."""

    def line(e: BaseException) -> str:
        text = str(e).strip()
        return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__

    root = error
    # dynamo keeps a backend's error as inner_exception (BackendCompilerFailed), not as a cause.
    while (inner := root.__cause__ or getattr(root, "inner_exception", None)) is not None:
        root = inner
    return line(error) if root is error else f"{line(error)} ({line(root)})"


def _warn(reason: str) -> None:
    log.warning("compile=true, but the backbone runs uncompiled: %s", reason)
