"""How a kernel cuts its output into blocks, and which block a task number stands for.

The parallel kernels hand out their blocks one at a time (``tasks.claim_task``). ``balanced_blocks``
says how many blocks to cut (a multiple of the threads, so that equal cores get equal work),
``tile_block`` which rows and column tiles of which product a task number means, and ``in_turn``
which block a claim means when each thread should keep to one contiguous share.
"""
from numba import njit



@njit(cache=True)
def tile_block(task, n, tiles, mr, row_blocks, col_blocks):
    """(z, i0, i1, t0, t1): the rows i0..i1 and the column tiles t0..t1 of out[z] that task number ``task``
    of nb·col_blocks·row_blocks computes, *column blocks fastest*: threads claim tasks in turn
    (``tasks.claim_task``), so when the cores are equally fast and the column blocks a multiple of the
    threads, thread t takes tasks t, t + T, t + 2T, ... of the T threads, all in its own column blocks.
    Rows come in tiles of ``mr`` shared out as ``balanced_blocks`` says, and so do the ``tiles`` column
    tiles: register tiles (``matmul_tiles``), cache lines of columns (``matmul_axpy``), or one
    (``matmul_kmajor``, whose tasks are blocks of rows)."""
    per_batch, row_tiles = row_blocks * col_blocks, (n + mr - 1) // mr
    z, rb, cb = task // per_batch, task % per_batch // col_blocks, task % col_blocks
    i0, i1 = rb * row_tiles // row_blocks * mr, min((rb + 1) * row_tiles // row_blocks * mr, n)
    return z, i0, i1, cb * tiles // col_blocks, (cb + 1) * tiles // col_blocks


@njit(cache=True)
def in_turn(task, tasks, threads):
    """The block that claim number ``task`` computes, of ``tasks`` (a multiple of ``threads``, else the
    same number): thread t of T threads taking turns at the same pace claims t, t + T, t + 2T, ..., and
    gets the blocks t·tasks/T, t·tasks/T + 1, ...: one contiguous share each, as ``prange`` gave."""
    if threads <= 1 or tasks % threads != 0:
        return task
    return task % threads * (tasks // threads) + task // threads


@njit(cache=True)
def balanced_blocks(units, most, threads):
    """How many blocks to cut ``units`` (rows, tiles) into: at least enough for blocks of ``most``
    units, and a multiple of ``threads`` (if there are that many units), so that threads of equal speed,
    claiming blocks in turn (``tasks.claim_task``), get the same work. Block b holds units
    [b·units // blocks, (b+1)·units // blocks).

    NOTE: before the tasks were claimed, Numba handed each thread one contiguous share of a ``prange``'s
    iterations. The VAE's 128 x 784 @ 784 x 400 product had 5 row blocks of 30, 30, 30, 30 and 8 rows:
    two threads got 90 and 38 rows and took 1.28x less time than one, not 2x. Claimed in turn, 5 blocks
    still leave one thread a block more than the other."""
    blocks = max(1, -(-units // most))
    if threads > 1 and units >= threads:
        blocks = min(units, -(-blocks // threads) * threads)
    return blocks
