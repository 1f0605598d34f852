"""Where the tasks of a Dask fit run: the current ``dask.distributed`` Client
(futures: the data stays on the workers, the centers go out with each wave and
only partials come back), or dask's local scheduler when there is none. Dask
does all the transport; this module only chooses the calls."""
import uuid

import dask
import numpy as np

EMBED_BYTES = 64 << 10   # values up to this size go inside the tasks


def current_client():
    """The default distributed Client, or None (no distributed, or no Client)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


class Backend:
    """One fit's way of running chunk tasks: ``chunks(array)`` (one handle per
    row chunk of a persisted array), ``broadcast(value)``, ``map(fn, ...)``
    (one task per chunk, all at once) and ``gather``."""

    after_wave = None   # test hook: called with a wave's name once its results are in

    def __init__(self, client=None):
        self.client = client if client is not None else current_client()
        self.token = uuid.uuid4().hex

    def persist(self, array):
        return self.client.persist(array) if self.client is not None else array.persist()

    def chunks(self, array):
        """Handles of the row chunks of a persisted 2-D (or 1-D) array, in order."""
        keys = [k[0] if isinstance(k, list) else k for k in array.__dask_keys__()]
        if self.client is None:
            delayed = array.to_delayed().ravel()
            return list(delayed)
        from distributed import futures_of

        futures = {f.key: f for f in futures_of(array)}
        return [futures[k] for k in keys]

    def broadcast(self, value):
        """``value`` for every task of the next wave: a future that each worker
        fetches once, or the value itself for the local scheduler and for
        small values (up to EMBED_BYTES: they travel inside the task messages,
        which costs less than a fetch).

        The future is the result of a task that returns its argument (the
        value sits in the task's spec on the scheduler), not
        ``client.scatter``: scattered data cannot be recomputed, and a broadcast
        scatter waits forever on a worker that died during it
        (dask/distributed#5704), whereas this one is simply recomputed
        elsewhere if its worker dies."""
        if self.client is None or np.asarray(value).nbytes <= EMBED_BYTES:
            return value
        return self.client.submit(_same, value, pure=False,
                                  key=f"fastkm-value-{self.token}-{uuid.uuid4().hex[:8]}")

    def map(self, fn, per_chunk, *shared, name=None):
        """fn(*per_chunk[i], *shared) for every i, submitted together; ``gather``
        returns the results in chunk order.

        On a Client the chunks are grouped by the worker that holds their
        data (the first future of each ``per_chunk[i]``), at most one group
        per worker thread, and each group is one task that runs ``fn`` on its
        chunks in order: the scheduler's cost of a wave is per task, about
        5 ms each on a busy 2-core machine, while a chunk's kernels take a few
        milliseconds. The results do not depend on the grouping (each chunk's
        result is the same function of its own arguments)."""
        if self.client is None:
            tasks = [dask.delayed(fn, pure=False)(*args, *shared) for args in per_chunk]
            return list(dask.compute(*tasks))
        prefix = f"fastkm-{name or fn.__name__}-{self.token}-{uuid.uuid4().hex[:8]}"
        groups = self._groups(per_chunk)
        futures = [
            self.client.submit(_run_group, fn, [per_chunk[i] for i in idx], shared,
                               key=f"{prefix}-{j}", pure=False,
                               **({} if where is None else
                                  {"workers": [where], "allow_other_workers": True}))
            for j, (where, idx) in enumerate(groups)
        ]
        return _Wave(futures, [idx for _, idx in groups], len(per_chunk))

    def _groups(self, per_chunk):
        """[(worker or None, chunk indices)]: the chunks whose data a worker
        holds, split into as many groups as it has threads."""
        from distributed import Future

        data = [args[0] if args and isinstance(args[0], Future) else None for args in per_chunk]
        known = [f for f in data if f is not None]
        who = self.client.who_has(known) if known else {}
        nthreads = self.client.nthreads()
        by_worker = {}
        for i, f in enumerate(data):
            holders = sorted(who.get(f.key, ())) if f is not None else []
            by_worker.setdefault(holders[0] if holders else None, []).append(i)
        groups = []
        for where, idx in by_worker.items():
            parts = max(1, min(len(idx), int(nthreads.get(where, 1)))) if where else len(idx)
            size = -(-len(idx) // parts)
            groups += [(where, idx[a:a + size]) for a in range(0, len(idx), size)]
        return groups

    def gather(self, results, name=None):
        if self.client is not None:
            wave = results if isinstance(results, _Wave) else None
            try:
                results = self.client.gather(wave.futures if wave is not None else results)
            except Exception as e:
                if type(e).__name__ == "KilledWorker":
                    raise RuntimeError(
                        f"fastkm.dask: a task of wave {name!r} lost its worker too many times "
                        "(dask's distributed.scheduler.allowed-failures); the fit stopped "
                        "without a result.") from e
                raise
            if wave is not None:
                ordered = [None] * wave.n
                for idx, values in zip(wave.groups, results):
                    for i, value in zip(idx, values):
                        ordered[i] = value
                results = ordered
        if self.after_wave is not None:
            self.after_wave(name)
        return results

    def run_all(self, fn, *args):
        """fn(*args) in every worker process (and here, for the local scheduler)."""
        if self.client is None:
            return fn(*args)
        try:
            self.client.run(fn, *args)
        except Exception:  # a worker going away must not hide the fit's own outcome
            pass
        return None


def _same(value):
    return value


class _Wave:
    """The tasks of one ``Backend.map`` call: group futures, each group's
    chunk indices, the number of chunks."""

    def __init__(self, futures, groups, n):
        self.futures, self.groups, self.n = futures, groups, n


def _run_group(fn, per_chunk, shared):
    """One task: ``fn`` on each of its chunks in turn."""
    return [fn(*args, *shared) for args in per_chunk]


def aligned_chunks(row_chunks, block):
    """Row chunks whose inner boundaries are multiples of ``block``: each
    boundary moved to the nearest multiple (duplicates and empty chunks dropped)."""
    bounds = np.cumsum(row_chunks)
    n = int(bounds[-1]) if len(bounds) else 0
    inner = sorted({(int(b) + block // 2) // block * block for b in bounds[:-1]} - {0, n})
    inner = [b for b in inner if 0 < b < n]
    edges = [0, *inner, n]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:]) if b > a)
