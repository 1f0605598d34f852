"""fastkm's compiled kernels (Cython, nogil, OpenMP). Private: the Python layer
(``fastkm.kmeans``, ``fastkm.image``) validates every input and allocates every
buffer; kernels only fill them, never validate, never write the caller's arrays.

Determinism, the design rule of every module here: sums over samples are taken
per fixed row block (``layout.block_layout`` depends on the data shape only,
never on the thread count) in float64 and merged in block order, so every
result is bitwise identical whatever the number of threads.

Modules (one job each):

- ``runtime``      facts about the OpenMP runtime and the CPU
- ``layout``       row blocks, tiles and center packing; the constants the Python layer mirrors
- ``reduce``       ``BlockSums``: per-block center sums and their block-ordered merge
- ``stats``        inertia, norms, column statistics, center-center distances, finiteness
- ``dedup``        distinct rows (hash partitions) and the spatial (Morton) order
- ``lloyd``        Lloyd's fused assignment + center sums; ``predict`` and ``transform``
- ``hamerly``      Hamerly's bounds, and Exponion's ball search on top of them
- ``elkan``        Elkan's n x k bounds
- ``seeding``      k-means++ for few features, and the D^2 draws
- ``seeding_dot``  k-means++ for many features (dot-product tiles, exact pruning)
- ``minibatch``    one mini-batch K-Means step: batch labels, counting-sort center update
- ``csr``          sparse input: the ``CSR`` rows object, structure checks, column statistics,
                   rows grouped by label
- ``sparse_centers``  the centers of a sparse fit: tile layout, the center update, exact inertia
- ``sparse_lloyd`` Lloyd's assignment of CSR rows to center tiles; ``transform``; the center Gram
- ``sparse_bounds``  Hamerly / Exponion and Elkan on CSR rows
- ``sparse_seeding``  k-means++ on CSR rows
- ``sparse_minibatch``  one mini-batch step on CSR rows: batch labels on the center tiles,
                   counting-sort center update in the tiles
- ``scalable``     k-means||: D^2 to a round's candidates, block potentials, Philox draws
- ``partials``     per-block column sums, inertia and farthest rows of a fit split in pieces

Inline helpers shared by those (``.pxd`` only): ``numerics`` (distance rounding
order, bounds from comparison values, the rounding margin), ``tiles`` (the
register/vector tile kernels), ``accumulate`` (weighted row sums per label),
``csr_tiles`` (CSR rows against center tiles: the sparse rounding order and margin).
C that is more than a few lines lives in ``src/*.h``.

``lloyd``, ``hamerly``, ``elkan``, ``seeding``, ``seeding_dot``, ``minibatch``,
``sparse_lloyd``, ``sparse_bounds``, ``sparse_seeding``, ``sparse_minibatch`` and
``scalable`` are also built for x86-64-v3 and v4; ``fastkm._dispatch`` imports the
best build the CPU runs.
"""
