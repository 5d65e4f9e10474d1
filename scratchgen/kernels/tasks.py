"""Tasks handed out one at a time: ``counter = task_counter()``, then ``claim_task(counter)`` in each thread.

A Numba ``prange`` loop gives each thread one contiguous share of its iterations, decided before
any of them starts (``matmul_numba.blocks.balanced_blocks`` cuts the tasks so that the shares are equal).
Equal shares take equal times only on equal cores. They are not equal when another program runs
on one of them (a browser beside the training run), on laptops whose cores differ (Intel's
performance and efficiency cores), or on a virtual machine whose cores the host shares out
unevenly: on the 2-core AMD EPYC VM of the measurements below, one core ran a 256 x 256 matmul in
483-530 µs while the other took 649-769, and which one was slow changed from minute to minute. A
call with equal shares then waits for the slow core, and two threads may take longer than one.

Work sharing instead: the kernel starts one loop per thread, and each thread takes the next task
from a shared counter whenever it has finished the last one, until none are left:

    counter = task_counter()                        # how many tasks have been handed out: 0
    for _ in prange(threads):                       # one iteration per thread
        task = claim_task(counter)
        while task < tasks:
            ... compute task number ``task`` ...
            task = claim_task(counter)

A fast core takes more tasks, a slow one fewer, and both finish at about the same time. Which
thread computes a task never changes its result: each task writes its own part of the output, in
its own order. Which part a claim number stands for is the kernel's choice: threads of equal speed
take turns (thread t claims t, t + T, t + 2T, ...), so a kernel whose threads should each keep to
one region numbers its tasks for that (``matmul_numba.blocks.tile_block``, ``matmul_numba.blocks.in_turn``).

``claim_task`` must add 1 to the counter and return the old value as one indivisible step (an
*atomic* fetch-and-add): as a plain ``counter[0] += 1``, two threads that read the counter at the
same moment would both take that task and one task would be skipped. Numba has no atomic
operations on the CPU, so this is a Numba *intrinsic* (as ``stack.stack_tile``): it emits LLVM's
``atomicrmw add``, one ``lock xadd`` instruction on x86. "monotonic" ordering is enough: the
counter orders nothing but itself, and the end of the ``prange`` loop waits for every thread.

Measured (2026-12-07, AMD EPYC Zen 3, 2 vCPUs of a KVM VM, the forward pass of the VQ-VAE's 3x3
64->64 layer on (128, 64, 7, 7), ``conv_tiles._gathered_rows``, one process timing both in turn,
two threads' time as a fraction of one thread's): in processes where the cores ran alike, equal
shares 0.51-0.56 and work sharing 0.51-0.56; where they did not, 0.68 -> 0.58 and 0.71 -> 0.62;
with another program busy on one core, equal shares 1.23-1.49 (slower than one thread) and work
sharing 0.73-0.91.
"""
import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic


@numba.njit(cache=True)
def task_counter():
    """A new counter of handed-out tasks, at 0 (a one-element array the threads share)."""
    return np.zeros(1, dtype=np.intp)


def _claim_task_python(counter):
    """The plain-Python meaning of ``claim_task`` (with the JIT off there is one thread)."""
    task = counter[0]
    counter[0] += 1
    return task


@intrinsic
def _fetch_add(typingctx, counter):
    """counter[0] += 1 as one atomic step; the value before."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.intp and counter.ndim == 1):
        return None     # Numba then reports that no version of claim_task matches these types

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        first = cgutils.get_item_pointer(context, builder, signature.args[0], array,
                                         [context.get_constant(types.intp, 0)])
        return builder.atomic_rmw("add", first, context.get_constant(types.intp, 1), "monotonic")

    return types.intp(counter), codegen


claim_task = _claim_task_python if numba.config.DISABLE_JIT else _fetch_add
