"""A small array on the stack, for a micro-kernel's accumulators: ``stack_tile(rows, row_bytes, like)``.

A register tile of the matmul (``matmul_numba.tiles.register_tile``) sums MR x NR numbers over the
whole k loop. Where those running sums live decides its speed:

* in an array from ``np.zeros`` (the heap), LLVM must assume that storing into it may change the
  packed operands it reads (all three are just pointers to it), so every step of the k loop
  loads the sums from memory and stores them back: 12 loads and 12 stores per 12 multiply-adds;
* in scalar locals (``c00, c01, ...``) they stay in registers, but LLVM's loop vectoriser only
  vectorises loops, and Numba runs it without the "SLP" pass that would merge neighbouring
  scalars into vectors: the tile stays scalar;
* in an array on the *stack* of the function (an ``alloca`` in LLVM), which nothing outside the
  function can point to, LLVM proves that no other pointer aliases it, vectorises the loop over
  the tile's columns, and then keeps the whole tile in vector registers across the k loop: 12
  multiply-adds per 6 broadcasts and 2 loads, and no stores (``kernel.inspect_asm()`` shows it).

Numba has no stack arrays on the CPU, so ``stack_tile`` is a Numba *intrinsic*: a function that
writes the LLVM code of its call itself (a few lines: one ``alloca`` in the function's entry
block and the array header around it). Rules that follow from living on the stack:

* the array exists until the function that called ``stack_tile`` returns: never return it or
  store it anywhere (it would point into a finished call's frame);
* one call site is one buffer, reused by every pass of a loop, and its values are garbage at
  first: the caller zeroes it;
* its shape must be known when the kernel compiles (``rows`` and ``row_bytes`` are constants,
  e.g. module globals), so that LLVM can unroll and keep it in registers.

With the JIT off (``NUMBA_DISABLE_JIT=1``) the same call returns an ordinary NumPy array.
"""
import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array


def heap_tile(rows, row_bytes, like):
    """The plain-Python meaning of ``stack_tile``: a (rows, row_bytes // itemsize) array of
    ``like``'s dtype (uninitialised, like the stack one)."""
    return np.empty((rows, row_bytes // like.itemsize), dtype=like.dtype)


@intrinsic
def _alloca_tile(typingctx, rows, row_bytes, like):
    """(rows, row_bytes // itemsize) C-contiguous array of ``like``'s dtype in the calling function's
    stack frame; ``rows`` and ``row_bytes`` must be compile-time integer constants."""
    if not (isinstance(rows, types.IntegerLiteral) and isinstance(row_bytes, types.IntegerLiteral)):
        return None     # Numba then reports that no version of stack_tile matches these types
    tile_type = types.Array(like.dtype, 2, "C")

    def codegen(context, builder, signature, args):
        element = context.get_data_type(like.dtype)
        itemsize = context.get_abi_sizeof(element)
        n_rows, n_cols = rows.literal_value, row_bytes.literal_value // itemsize
        with builder.goto_entry_block():     # a fixed-size alloca in the entry block: LLVM may promote it
            memory = builder.alloca(ir.ArrayType(element, n_rows * n_cols))
        intp = context.get_value_type(types.intp)
        tile = make_array(tile_type)(context, builder)
        populate_array(tile, data=builder.bitcast(memory, element.as_pointer()),
                       shape=[intp(n_rows), intp(n_cols)], strides=[intp(n_cols * itemsize), intp(itemsize)],
                       itemsize=intp(itemsize), meminfo=None)      # no meminfo: nothing to free
        return tile._getvalue()

    return tile_type(rows, row_bytes, like), codegen


stack_tile = heap_tile if numba.config.DISABLE_JIT else _alloca_tile
