"""Peak bytes of live tensors on CPU — the quantity `torch.cuda.max_memory_allocated()` gives on GPU.

Why: a CPU process's RSS high-water mark depends on the allocator (glibc keeps, splits and reuses freed
blocks), so two runs of the same step differ by ±10 % and the freed activations of one op hide the next
op's. Counting tensor storages instead is exact and repeatable: every tensor an operator returns —
forward, autograd's backward, the optimizer — passes through a `TorchDispatchMode`; its storage is
counted when first seen and uncounted when it is garbage-collected (`weakref.finalize`). Views and
in-place results share a storage and are counted once.

Not counted: scratch buffers a C++ kernel allocates and frees inside one call (e.g. the fused attention
kernel's per-thread blocks), and anything allocated before the mode is entered (parameters, optimizer
state, the batch) — the baseline, as in the CUDA measurement.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorBytes(TorchDispatchMode):
    """`with LiveTensorBytes() as live: step()` → `live.peak` bytes of tensors created and alive at once.

    >>> with LiveTensorBytes() as live:
    ...     a = torch.ones(1024)  # 4 KiB
    ...     b = a * 2  # 4 KiB more while both live
    ...     del a, b
    ...     c = torch.ones(256)
    >>> live.peak, live.live
    (8192, 1024)
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: dict[int, weakref.finalize] = {}

    def _release(self, key: int, nbytes: int) -> None:
        self._tracked.pop(key, None)
        self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
                continue
            storage = tensor.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in self._tracked:
                continue
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            self._tracked[key] = weakref.finalize(storage, self._release, key, nbytes)
        return out
