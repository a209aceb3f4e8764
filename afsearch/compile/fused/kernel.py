"""The fused kernel as torch modules: an autograd Function around the C calls (plans cached per
program tuple), `FusedActivation` (an eager generated module with a kernel for float32 CPU
inputs) and `fused_packed` (K members applied to K stacked slices in one call)."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from afsearch.compile.fused import library
from afsearch.compile.fused.library import _Prog
from afsearch.compile.fused.lowering import FusedProgram

#: with policy "auto", inputs smaller than this run eager: a custom autograd Function costs
#: tens of microseconds per call, more than the few fused passes save on small tensors
AUTO_MIN_ELEMENTS = 16384


class _Plan:
    """The C descriptions of a sequence of programs. Immutable (trainable constants are passed
    per call), so it is built once per module or member tuple and reused."""

    def __init__(self, programs: Sequence[FusedProgram]) -> None:
        self.programs = tuple(programs)
        structs = (_Prog * len(self.programs))()
        offset = 0
        for st, prog in zip(structs, self.programs, strict=True):
            st.code = prog.code.ctypes.data
            st.imm = prog.imm.ctypes.data
            st.consts = prog.consts.ctypes.data if len(prog.consts) else _DUMMY.ctypes.data
            st.n_instr = prog.n_instr
            st.n_fixed = prog.n_fixed
            st.first_param = 1 + len(prog.consts)
            st.n_params = len(prog.param_names)
            st.param_offset = offset
            offset += len(prog.param_names)
        self.n_params = offset
        self.structs = structs
        self.ref = ctypes.byref(structs)
        self.uses_x = any(prog.uses_x for prog in self.programs)


_DUMMY = np.zeros(1, dtype=np.float32)  # a valid pointer for an empty array
_NO_PARAMS = torch.zeros(1)
_PLANS: dict[tuple[FusedProgram, ...], _Plan] = {}
_PLANS_MAX = 256


def _plan(programs: tuple[FusedProgram, ...]) -> _Plan:
    plan = _PLANS.get(programs)
    if plan is None:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        plan = _PLANS[programs] = _Plan(programs)
    return plan


class _FusedFunction(torch.autograd.Function):
    """y[o, k] = program_k(x[o, k]) for x viewed as [outer, K, M] (outer = 1: K contiguous
    slices); the inputs after x are every program's trainable constants in order (``values``
    holds the same numbers as one float32 array)."""

    @staticmethod
    def forward(ctx, lib: ctypes.CDLL, plan: _Plan, values: torch.Tensor, outer: int,  # type: ignore[override]
                x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        k = len(plan.programs)
        if lib.afs_forward(plan.ref, outer, k, x.numel() // (k * outer), x.data_ptr(), values.data_ptr(),
                           y.data_ptr(), torch.get_num_threads()) != 0:
            raise MemoryError("fused activation kernel could not allocate its scratch memory")
        ctx.save_for_backward(x, *params)
        ctx.lib, ctx.plan, ctx.values, ctx.outer = lib, plan, values, outer
        return y

    @staticmethod
    @once_differentiable  # the kernel's gradient is not itself differentiable: say so loudly
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, *params = ctx.saved_tensors
        plan: _Plan = ctx.plan
        need_x = ctx.needs_input_grad[4]
        need_p = any(ctx.needs_input_grad[5:])
        if grad.dtype != torch.float32:
            grad = grad.float()
        # sum().backward() hands in one value expanded to the full shape: pass it as a scalar
        # instead of materialising it
        g_scalar = all(st == 0 for st in grad.stride())
        if not g_scalar:
            grad = grad.contiguous()
        gx = torch.empty_like(x) if need_x else None
        pgrad = torch.empty(plan.n_params) if need_p else None
        k, outer = len(plan.programs), ctx.outer
        if ctx.lib.afs_backward(
            plan.ref, outer, k, x.numel() // (k * outer), x.data_ptr(), ctx.values.data_ptr(), grad.data_ptr(), int(g_scalar),
            gx.data_ptr() if gx is not None else None, pgrad.data_ptr() if pgrad is not None else None,
            torch.get_num_threads(),
        ) != 0:
            raise MemoryError("fused activation kernel could not allocate its scratch memory")
        if pgrad is None:
            return (None, None, None, None, gx, *(None for _ in params))
        grads = [pgrad[i].view(p.shape) if ctx.needs_input_grad[5 + i] else None for i, p in enumerate(params)]
        return (None, None, None, None, gx, *grads)


def _kernel_ok(x: torch.Tensor, params: Sequence[torch.Tensor]) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.numel() == 0:
        return False
    for p in params:
        if p.device.type != "cpu" or p.dtype != torch.float32 or p.numel() != 1:
            return False
    # graph tracing/scripting and functorch transforms cannot see through a ctypes call
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch._C._are_functorch_transforms_active():
        return False
    return library.loaded() is not None


def _run(plan: _Plan, params: Sequence[torch.Tensor], x: torch.Tensor, outer: int = 1) -> torch.Tensor:
    lib = library.loaded()
    assert lib is not None
    values = torch.cat([p.detach().reshape(1) for p in params]) if params else _NO_PARAMS
    x = x.contiguous()
    # x itself is not an input when the formula ignores it: its .grad stays None, as in eager
    return _FusedFunction.apply(lib, plan, values, outer, x if plan.uses_x else x.detach(), *params)


class FusedActivation(nn.Module):
    """An eager generated activation with a fused CPU kernel for float32 inputs.

    Holds the eager module's own ``nn.Parameter`` objects under the same names (the state
    dict is identical, and gradients land on those parameters); every input the kernel does
    not handle goes through the eager module's forward.

    ``policy="auto"`` (default) also leaves to eager what it runs at least as fast: formulas
    eager computes with a single torch kernel (``silu(x)``, ``relu(x)``) and inputs under
    :data:`AUTO_MIN_ELEMENTS`; ``policy="always"`` uses the kernel whenever it can."""

    def __init__(self, eager: nn.Module, program: FusedProgram, policy: str = "auto") -> None:
        super().__init__()
        if policy not in ("auto", "always"):
            raise ValueError(f"policy must be 'auto' or 'always', got {policy!r}")
        self.policy = policy
        names = tuple(name for name, _ in eager.named_parameters())
        if names != program.param_names:
            raise ValueError(f"parameters {names} of the eager module do not match the program's {program.param_names}")
        for name, p in eager.named_parameters():
            self.register_parameter(name, p)
        # a plain attribute, not a submodule: no duplicate parameters in state_dict/parameters()
        object.__setattr__(self, "_eager", eager)
        self.program = program
        self.formula = getattr(eager, "formula", "")

    @property
    def eager(self) -> nn.Module:
        """The eager module (sharing this module's parameters)."""
        # .to()/.double() with parameter swapping may have replaced our Parameter objects
        for name in self.program.param_names:
            if self._eager._parameters[name] is not self._parameters[name]:
                self._eager._parameters[name] = self._parameters[name]
        return self._eager

    def _params(self) -> list[torch.Tensor]:
        return [self._parameters[name] for name in self.program.param_names]  # type: ignore[misc]

    def uses_kernel(self, x: torch.Tensor) -> bool:
        """Whether forward(x) runs the fused kernel (else the eager module)."""
        return self._wants_kernel(x) and _kernel_ok(x, self._params())

    def _wants_kernel(self, x: torch.Tensor) -> bool:
        if self.program.identity:
            return False
        if self.policy == "always":
            return True
        return self.program.eager_kernels > 1 and x.numel() >= AUTO_MIN_ELEMENTS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = self._params()
        if self._wants_kernel(x) and _kernel_ok(x, params):
            # plans are cached by program, not stored here: the module stays deep-copyable
            return _run(_plan((self.program,)), params, x)
        return self.eager(x)

    def extra_repr(self) -> str:
        return f"formula={self.formula!r}"


def fused_packed(members: Sequence[FusedActivation], x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Apply member k to slice ``x.select(dim, k)`` of a stacked input whose dimension `dim`
    has one entry per member, in one kernel call (forward and backward); each member's
    trainable constants get their own gradients. Equals ``torch.stack([m(x.select(dim, k)) for
    k, m in enumerate(members)], dim)``, which is also what runs when the kernel cannot (see
    :class:`FusedActivation`). A member axis after the first (e.g. the channel blocks of packed
    CNNs, ``[B, K, C*L]``) costs no copy when x is contiguous."""
    if not 0 <= dim < x.dim() or x.shape[dim] != len(members):
        raise ValueError(f"x has shape {tuple(x.shape)}, expected {len(members)} members along dimension {dim}")
    params = [p for m in members for p in m._params()]
    if members and _kernel_ok(x, params):
        return _run(_plan(tuple(m.program for m in members)), params, x, outer=math.prod(x.shape[:dim]))
    return torch.stack([m(x.select(dim, k)) for k, m in enumerate(members)], dim)
