# Row blocks, tiles and center packing: the shapes every kernel agrees on.
cdef enum:
    CHUNK = 256          # rows per tile: the transposed tile and its distances stay in L1/L2
    # up to DIRECT_MAX_D features, distances are sums of (x - c)^2; above, they
    # are 0.5||c||^2 - x.c through dot-product tiles
    DIRECT_MAX_D = 8
    CENTER_TILE = 16     # the padded count of centers (dot_operands) is a multiple of this
    MAX_BLOCKS = 64      # reduction blocks of a row layout, at most
    BALL_SIZE = 16       # Exponion: nearest centers kept per center (one float32 zmm of lanes)
