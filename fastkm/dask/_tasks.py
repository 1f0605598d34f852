"""What a Dask task does with one chunk of rows: plain functions of NumPy
arrays that call fastkm's compiled kernels on the worker and return small
partials (tree nodes over canonical blocks, ``fastkm.kmeans._pieces``).

Per-chunk state between tasks (labels and bounds of the solver, D^2 of the
seeding) is a cache in the worker process, keyed by (fit, run, chunk) and
versioned by iteration. It only saves work: a task that finds no state, or
state of another iteration (a retried task, a task moved to another worker,
a restarted worker), rebuilds it from its arguments and gives the same
partials, reporting the changed-label count as unknown (-1). So a fit is the
same bits whatever happens to the workers.
"""
import os
import threading
from collections import OrderedDict

import numpy as np

from fastkm import _threads
from fastkm._dispatch import lloyd, scalable
from fastkm._kernels import partials, stats
from fastkm._kernels.reduce import BlockSums
from fastkm.kmeans._pieces import FAR_ROWS, column_nodes, piece_far, piece_partials
from fastkm.kmeans._prepare import FitData
from fastkm.kmeans._scalable import find_in_block
from fastkm.kmeans._solver import STEPS
from fastkm.kmeans._tree import TreeSum

MAX_FITS = 4        # fits whose state a worker keeps (the oldest is dropped)

_STATES = OrderedDict()   # fit token -> {(run, chunk): state}
_LOCK = threading.Lock()


def _get(token, key):
    with _LOCK:
        return _STATES.get(token, {}).get(key)


def _put(token, key, state):
    with _LOCK:
        fit = _STATES.setdefault(token, {})
        _STATES.move_to_end(token)
        fit[key] = state
        while len(_STATES) > MAX_FITS:
            _STATES.popitem(last=False)


def forget(token):
    """Drop the state of one fit (run on every worker when the fit ends)."""
    with _LOCK:
        _STATES.pop(token, None)
    return True


def task_threads(n_threads):
    """Threads of one task: ``n_threads``, or by default this process's share
    of its CPUs among the tasks its worker runs at once."""
    if n_threads is not None:
        return max(1, int(n_threads))
    slots = 1
    try:
        from distributed import get_worker

        slots = max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        slots = max(1, os.cpu_count() or 1)  # dask's threaded scheduler: one task per CPU
    return max(1, _threads.default_threads()[0] // slots)


def _rows(x, dtype):
    return np.ascontiguousarray(x, dtype=dtype)


def _weights(w, n, dtype):
    return np.ones(n, dtype=dtype) if w is None else np.ascontiguousarray(w, dtype=dtype)


# ---------------------------------------------------------------- column statistics


def chunk_stats(x, w, dtype, center, block, first_block, n_threads):
    """One chunk's checks and per-block sums: finite rows and weights, tree
    nodes of its column sums (or squared deviations from ``center``) and, on
    the first pass, its per-block total weights."""
    x = _rows(x, dtype)
    w = _weights(w, x.shape[0], dtype)
    nt = task_threads(n_threads)
    out = {"finite": bool(np.isfinite(x).all()), "n": x.shape[0]}
    if not out["finite"]:
        return out
    out["nodes"] = column_nodes(x, center, block, first_block, nt)
    if center is None:
        out["weights_ok"] = bool(np.isfinite(w).all() and (w >= 0).all())
        totals = np.empty(max(1, -(-x.shape[0] // block)))
        scalable.block_potentials(w, None, None, block, totals, nt)
        out["weight_totals"] = totals
    return out


# ---------------------------------------------------------------- k-means||


class _SeedState:
    def __init__(self, n):
        self.closest = np.full(n, np.inf)
        self.owner = np.zeros(n, dtype=np.int32)
        self.sets = 0              # candidate sets applied so far


def _seed_state(x, token, key, sets, upto, n_threads):
    """The chunk's D^2 after candidate sets 0 .. upto - 1 (rebuilt if needed)."""
    state = _get(token, key)
    if state is None or state.sets > upto:
        state = _SeedState(x.shape[0])
    offset = sum(s.shape[0] for s in sets[:state.sets])
    for j in range(state.sets, upto):
        r = _threads.region("kmeans||-lower", x.shape[0] * sets[j].size, -(-x.shape[0] // 256),
                            n_threads)
        scalable.lower_closest(x, sets[j], state.closest, state.owner, offset, r)
        _threads.record(r)
        offset += sets[j].shape[0]
    state.sets = upto
    _put(token, key, state)
    return state


def seed_find(x, w, dtype, block_local, local, block):
    """Chunk-local row of block ``block_local`` where the running weight passes ``local``."""
    w = _weights(w, np.shape(x)[0], dtype)
    rows = slice(block_local * block, (block_local + 1) * block)
    return block_local * block + find_in_block(w[rows], local)


def take_rows(x, dtype, local_rows):
    return _rows(np.asarray(x)[np.asarray(local_rows, dtype=np.intp)], dtype)


def seed_lower(x, w, dtype, token, key, sets, block, n_threads):
    """D^2 lowered to the last candidate set; the chunk's per-block potentials."""
    x = _rows(x, dtype)
    w = _weights(w, x.shape[0], dtype)
    nt = task_threads(n_threads)
    state = _seed_state(x, token, key, sets, len(sets), nt)
    out = np.empty(max(1, -(-x.shape[0] // block)))
    scalable.block_potentials(w, state.closest, None, block, out, nt)
    return out


def seed_sample(x, w, dtype, token, key, sets, potential, ell, rng_key, round_, start,
                n_threads):
    """The chunk's draws of one round: (global rows, the rows)."""
    x = _rows(x, dtype)
    w = _weights(w, x.shape[0], dtype)
    nt = task_threads(n_threads)
    state = _seed_state(x, token, key, sets, len(sets), nt)
    picked = np.empty(x.shape[0], dtype=np.uint8)
    scalable.sample_rows(w, state.closest, None, potential, ell, rng_key[0], rng_key[1], round_,
                         start, picked, nt)
    idx = np.flatnonzero(picked)
    return idx + start, x[idx].copy()


def seed_weights(x, w, dtype, token, key, sets, m, block, first_block, n_threads):
    """Tree nodes of the weight nearest to each of the m candidates."""
    x = _rows(x, dtype)
    w = _weights(w, x.shape[0], dtype)
    state = _seed_state(x, token, key, sets, len(sets), task_threads(n_threads))
    acc = TreeSum()
    for j in range(max(1, -(-x.shape[0] // block))):
        rows = slice(j * block, (j + 1) * block)
        acc.add(first_block + j, np.bincount(state.owner[rows],
                                             weights=np.asarray(w[rows], dtype=np.float64),
                                             minlength=m))
    return acc.nodes()


# ---------------------------------------------------------------- the solver


class _StepState:
    def __init__(self, step, n, w):
        self.step = step
        self.labels = np.full(n, -1, dtype=np.int32)
        self.w = w                 # the chunk's weights (unit weights made once)
        self.it = -1               # the last iteration this state took part in


def _new_step(x, w, centers, algorithm, block, n_threads):
    data = FitData(x, w, None, w, False, None, None)
    step = STEPS[algorithm](data, centers, n_threads)
    k, d = centers.shape
    step.sums = BlockSums(x.shape[0], k, d, block)   # canonical blocks, not the chunk's own
    return step


def chunk_iterate(x, w, dtype, token, key, it, centers, prev_centers, algorithm, block,
                  first_block, start, with_stats, n_threads):
    """Iteration ``it`` on one chunk: labels of ``centers`` (the step of
    ``algorithm``, its bounds carried from iteration it - 1 when this worker
    has them), and {'nodes': tree nodes of [sums | weights | inertia],
    'far': the chunk's farthest rows or None, 'changed': labels changed or -1}.
    The inertia and the farthest rows only ``with_stats``."""
    x = _rows(x, dtype)
    nt = task_threads(n_threads)
    state = _get(token, key)
    carried = state is not None and state.it == it - 1 and it > 0
    if carried:
        state.step.centers_moved(prev_centers, centers)
        w = state.w
    else:
        w = _weights(w, x.shape[0], dtype)
        state = _StepState(_new_step(x, w, centers, algorithm, block, nt), x.shape[0], w)
    state.step.n_threads = nt
    changed = state.step.iterate(centers, state.labels, not carried)
    state.it = it
    _put(token, key, state)
    nodes, far = piece_partials(x, w, centers, state.labels, state.step.sums, first_block, nt,
                                with_stats)
    if far is not None:
        far = piece_far(x, w, state.labels, *far, start, FAR_ROWS)
    return {"nodes": nodes, "far": far, "changed": changed if (carried or it == 0) else -1}


def chunk_farthest(x, w, dtype, token, key, it, centers, m, start, n_threads):
    """The chunk's m rows farthest from their centers at iteration ``it``."""
    x = _rows(x, dtype)
    w = _weights(w, x.shape[0], dtype)
    nt = task_threads(n_threads)
    state = _get(token, key)
    if state is not None and state.it == it:
        labels = state.labels
    else:
        labels = chunk_labels(x, centers, dtype, n_threads)
    dist = np.empty(x.shape[0])
    stats.distances_to_assigned(x, centers, labels, dist, nt)
    m = min(m, dist.size)
    kth = np.partition(dist, dist.size - m)[dist.size - m]
    top = np.flatnonzero(dist >= kth)
    top = top[np.lexsort((top, -dist[top]))][:m]
    return piece_far(x, w, labels, dist[top][None, :], top[None, :], start, m)


# ---------------------------------------------------------------- after the fit


def chunk_labels(x, centers, dtype, n_threads=None):
    """Nearest center of every row (``predict`` on a chunk)."""
    x = _rows(x, dtype)
    labels = np.empty(x.shape[0], dtype=np.int32)
    if x.shape[0]:
        k, d = centers.shape
        r = _threads.region("assign", x.shape[0] * k * d, -(-x.shape[0] // 256),
                            task_threads(n_threads))
        lloyd.assign_labels(x, centers, labels, r)
        _threads.record(r)
    return labels


def chunk_distances(x, centers, dtype, n_threads=None):
    """Distances of every row to every center (``transform`` on a chunk)."""
    x = _rows(x, dtype)
    out = np.empty((x.shape[0], centers.shape[0]), dtype=centers.dtype)
    if x.shape[0]:
        r = _threads.region("transform", x.shape[0] * centers.size, x.shape[0],
                            task_threads(n_threads))
        lloyd.pairwise_distances(x, centers, out, r)
        _threads.record(r)
    return out


def chunk_inertia(x, w, centers, dtype, block, first_block, n_threads=None):
    """Tree nodes of the chunk's inertia on ``centers`` (``score``)."""
    x = _rows(x, dtype)
    w = _weights(w, x.shape[0], dtype)
    labels = chunk_labels(x, centers, dtype, n_threads)
    nb = max(1, -(-x.shape[0] // block))
    inertia = np.empty(nb)
    top_dist = np.empty((nb, 1))
    top_row = np.empty((nb, 1), dtype=np.intp)
    partials.assigned_stats(x, w, centers, labels, block, inertia, top_dist, top_row,
                            task_threads(n_threads))
    acc = TreeSum()
    for j in range(nb):
        acc.add(first_block + j, inertia[j:j + 1])
    return acc.nodes()

