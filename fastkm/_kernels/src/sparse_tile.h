/* fastkm: the inner loops of the sparse kernels, CSR rows against dense centers.
 *
 * Centers are kept transposed in tiles of KT centers, shaped (n_tiles, d, KT):
 * a row's nonzero (f, x) reads the KT contiguous values ct[f, 0:KT] of a tile.
 * The comparison value of a row with center j is
 *
 *     v = hn_j;  v = FASTKM_MADD(-x_p, c_j[f_p], v)  for the row's nonzeros in order
 *
 * (hn_j = 0.5 ||c_j||^2 in the data's dtype), so that
 * ||x - c_j||^2 = ||x||^2 + 2 v up to rounding. The tile loop below and the
 * one-lane gather (fastkm_lane_*) do the same operations in the same order on
 * every lane: every algorithm compares the same bits.
 *
 * Also: the float64 dot products of k-means++ (rows against a tile of
 * candidates) and the micro-kernel of the center Gram matrix.
 */
#ifndef FASTKM_SPARSE_TILE_H
#define FASTKM_SPARSE_TILE_H

#include <Python.h>
#include <stdint.h>
#include "numerics.h"

/* centers per tile: 128 bytes of a tile row, four AVX2 vectors */
#define FASTKM_SKT_D 16
#define FASTKM_SKT_F 32
/* nonzeros ahead whose tile rows are requested early: the rows of a tile are
 * read in no order a hardware prefetcher could follow */
#define FASTKM_SPARSE_AHEAD 16
#define FASTKM_TILE_PREFETCH(ct, ind, p, m, KT, T)                                       \
    if ((p) + FASTKM_SPARSE_AHEAD < (m)) {                                               \
        const char* q_ = (const char*)((ct) + (Py_ssize_t)(ind)[(p) + FASTKM_SPARSE_AHEAD] * (KT)); \
        FASTKM_PREFETCH(q_);                                                             \
        FASTKM_PREFETCH(q_ + 64);                                                        \
    }
/* candidates per k-means++ pass, as float64 lanes */
#define FASTKM_SEED_LANES 8

#define FASTKM_ROW_TILE(NAME, T, KT)                                                     \
    static inline void NAME(const T* x, const int* ind, Py_ssize_t m, const T* ct,       \
                            const T* hn, T* out) {                                       \
        T acc[KT];                                                                       \
        for (int l = 0; l < KT; l++) acc[l] = hn[l];                                     \
        for (Py_ssize_t p = 0; p < m; p++) {                                             \
            const T nx = -x[p];                                                          \
            const T* c = ct + (Py_ssize_t)ind[p] * KT;                                   \
            FASTKM_TILE_PREFETCH(ct, ind, p, m, KT, T)                                   \
            for (int l = 0; l < KT; l++) acc[l] = FASTKM_MADD(nx, c[l], acc[l]);         \
        }                                                                                \
        for (int l = 0; l < KT; l++) out[l] = acc[l];                                    \
    }

/* Two rows at once: twice the independent accumulator chains while both have
 * nonzeros left, then each row alone; every lane of each row still adds its
 * terms in the row's own order (the same bits as one row at a time). */
#define FASTKM_ROW_TILE2(NAME, T, KT)                                             \
    static inline void NAME(const T* x0, const int* i0, Py_ssize_t m0, const T* x1,     \
                            const int* i1, Py_ssize_t m1, const T* ct, const T* hn,      \
                            T* out0, T* out1) {                                          \
        T a0[KT], a1[KT];                                                                \
        Py_ssize_t m = m0 < m1 ? m0 : m1, p;                                             \
        for (int l = 0; l < KT; l++) { a0[l] = hn[l]; a1[l] = hn[l]; }                   \
        for (p = 0; p < m; p++) {                                                        \
            const T n0 = -x0[p], n1 = -x1[p];                                            \
            const T* c0 = ct + (Py_ssize_t)i0[p] * KT;                                   \
            const T* c1 = ct + (Py_ssize_t)i1[p] * KT;                                   \
            FASTKM_TILE_PREFETCH(ct, i0, p, m0, KT, T)                                   \
            FASTKM_TILE_PREFETCH(ct, i1, p, m1, KT, T)                                   \
            for (int l = 0; l < KT; l++) a0[l] = FASTKM_MADD(n0, c0[l], a0[l]);          \
            for (int l = 0; l < KT; l++) a1[l] = FASTKM_MADD(n1, c1[l], a1[l]);          \
        }                                                                                \
        for (; p < m0; p++) {                                                            \
            const T n0 = -x0[p];                                                         \
            const T* c0 = ct + (Py_ssize_t)i0[p] * KT;                                   \
            FASTKM_TILE_PREFETCH(ct, i0, p, m0, KT, T)                                   \
            for (int l = 0; l < KT; l++) a0[l] = FASTKM_MADD(n0, c0[l], a0[l]);          \
        }                                                                                \
        for (; p < m1; p++) {                                                            \
            const T n1 = -x1[p];                                                         \
            const T* c1 = ct + (Py_ssize_t)i1[p] * KT;                                   \
            FASTKM_TILE_PREFETCH(ct, i1, p, m1, KT, T)                                   \
            for (int l = 0; l < KT; l++) a1[l] = FASTKM_MADD(n1, c1[l], a1[l]);          \
        }                                                                                \
        for (int l = 0; l < KT; l++) { out0[l] = a0[l]; out1[l] = a1[l]; }               \
    }

/* One center (one lane of a tile): the value above, and the float64 dot product
 * x.c (for distance bounds, which need more accuracy than the comparison). */
#define FASTKM_LANE(NAME, T, KT)                                                         \
    static inline T NAME(const T* x, const int* ind, Py_ssize_t m, const T* ct_lane,     \
                         T hn, double* dot) {                                            \
        T v = hn;                                                                        \
        double s = 0.0;                                                                  \
        for (Py_ssize_t p = 0; p < m; p++) {                                             \
            const T c = ct_lane[(Py_ssize_t)ind[p] * KT];                                \
            v = FASTKM_MADD(-x[p], c, v);                                                \
            s = FASTKM_MADD((double)x[p], (double)c, s);                                 \
        }                                                                                \
        *dot = s;                                                                        \
        return v;                                                                        \
    }

/* Up to FASTKM_GATHER centers of one row at once, each its own lane of some tile
 * (lane_ptr[g] = ct + tile * d * KT + lane): independent accumulator chains, each
 * doing FASTKM_LANE's operations in its order (the same bits as one at a time). */
#define FASTKM_GATHER 8
#define FASTKM_LANES(NAME, T, KT)                                                        \
    static inline void NAME(const T* x, const int* ind, Py_ssize_t m,                    \
                            const T* const* lane_ptr, const T* hn, int count, T* vals,   \
                            double* dots) {                                              \
        T v[FASTKM_GATHER];                                                              \
        double s[FASTKM_GATHER];                                                         \
        const T* c[FASTKM_GATHER];                                                       \
        for (int g = 0; g < FASTKM_GATHER; g++) {                                        \
            c[g] = lane_ptr[g < count ? g : count - 1];                                  \
            v[g] = hn[g < count ? g : count - 1];                                        \
            s[g] = 0.0;                                                                  \
        }                                                                                \
        for (Py_ssize_t p = 0; p < m; p++) {                                             \
            const Py_ssize_t off = (Py_ssize_t)ind[p] * KT;                              \
            const T nx = -x[p];                                                          \
            const double xd = (double)x[p];                                              \
            for (int g = 0; g < FASTKM_GATHER; g++) {                                    \
                const T cv = c[g][off];                                                  \
                v[g] = FASTKM_MADD(nx, cv, v[g]);                                        \
                s[g] = FASTKM_MADD(xd, (double)cv, s[g]);                                \
            }                                                                            \
        }                                                                                \
        for (int g = 0; g < count; g++) { vals[g] = v[g]; dots[g] = s[g]; }              \
    }

/* x.c in float64 for one center, in four partial sums (for distance bounds only:
 * any order of the sum has the same error bound). */
#define FASTKM_DOT_LANE(NAME, T, KT)                                                     \
    static inline double NAME(const T* x, const int* ind, Py_ssize_t m, const T* ct_lane) { \
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;                                   \
        Py_ssize_t p = 0;                                                                \
        for (; p + 4 <= m; p += 4) {                                                     \
            s0 = FASTKM_MADD((double)x[p], (double)ct_lane[(Py_ssize_t)ind[p] * KT], s0); \
            s1 = FASTKM_MADD((double)x[p + 1], (double)ct_lane[(Py_ssize_t)ind[p + 1] * KT], s1); \
            s2 = FASTKM_MADD((double)x[p + 2], (double)ct_lane[(Py_ssize_t)ind[p + 2] * KT], s2); \
            s3 = FASTKM_MADD((double)x[p + 3], (double)ct_lane[(Py_ssize_t)ind[p + 3] * KT], s3); \
        }                                                                                \
        for (; p < m; p++)                                                               \
            s0 = FASTKM_MADD((double)x[p], (double)ct_lane[(Py_ssize_t)ind[p] * KT], s0); \
        return (s0 + s1) + (s2 + s3);                                                    \
    }

FASTKM_ROW_TILE(fastkm_row_tile_d, double, FASTKM_SKT_D)
FASTKM_ROW_TILE(fastkm_row_tile_f, float, FASTKM_SKT_F)
FASTKM_ROW_TILE2(fastkm_row_tile2_d, double, FASTKM_SKT_D)
FASTKM_ROW_TILE2(fastkm_row_tile2_f, float, FASTKM_SKT_F)
FASTKM_LANE(fastkm_lane_d, double, FASTKM_SKT_D)
FASTKM_LANE(fastkm_lane_f, float, FASTKM_SKT_F)
FASTKM_LANES(fastkm_lanes_d, double, FASTKM_SKT_D)
FASTKM_LANES(fastkm_lanes_f, float, FASTKM_SKT_F)
FASTKM_DOT_LANE(fastkm_dot_lane_d, double, FASTKM_SKT_D)
FASTKM_DOT_LANE(fastkm_dot_lane_f, float, FASTKM_SKT_F)

/* k-means++: float64 dot products of a row with the FASTKM_SEED_LANES candidates
 * of a (d, LANES) tile. The tile is zero outside the candidates' columns, and
 * `bits` marks those columns: a nonzero in any other column would add x * 0 to
 * every lane, which leaves a sum that started at +0.0 unchanged (it is never
 * -0.0), so it is skipped without reading the tile. Each lane's value is the
 * same bits whichever candidates share the tile. */
#define FASTKM_SEED_DOTS(NAME, T)                                                        \
    static inline void NAME(const T* x, const int* ind, Py_ssize_t m, const double* tile,\
                            const uint64_t* bits, double* out) {                         \
        double acc[FASTKM_SEED_LANES];                                                   \
        for (int l = 0; l < FASTKM_SEED_LANES; l++) acc[l] = 0.0;                        \
        for (Py_ssize_t p = 0; p < m; p++) {                                             \
            const int f = ind[p];                                                        \
            if (!((bits[f >> 6] >> (f & 63)) & 1)) continue;                             \
            const double xv = (double)x[p];                                              \
            const double* c = tile + (Py_ssize_t)f * FASTKM_SEED_LANES;                  \
            for (int l = 0; l < FASTKM_SEED_LANES; l++) acc[l] = FASTKM_MADD(xv, c[l], acc[l]); \
        }                                                                                \
        for (int l = 0; l < FASTKM_SEED_LANES; l++) out[l] = acc[l];                     \
    }
FASTKM_SEED_DOTS(fastkm_seed_dots_d, double)
FASTKM_SEED_DOTS(fastkm_seed_dots_f, float)

/* Gram micro-kernel: g[a, b] += sum_f c[f, a0 + a] c[f, b0 + b] for a 4 x 8 block of
 * center pairs, c a (rows, kp) float64 panel (features x centers), g (4, 8) with
 * row stride ldg; each of the 32 sums adds its features in order, going on from
 * the value in g (the same bits whatever block or panel split it sits in). */
static inline void fastkm_gram_4x8(const double* c, Py_ssize_t rows, Py_ssize_t kp,
                                   Py_ssize_t a0, Py_ssize_t b0, double* g, Py_ssize_t ldg) {
    /* one accumulator array per center of the block: each inner loop is two
     * vector multiply-adds */
    double s0[8], s1[8], s2[8], s3[8];
    for (int b = 0; b < 8; b++) {
        s0[b] = g[b];
        s1[b] = g[ldg + b];
        s2[b] = g[2 * ldg + b];
        s3[b] = g[3 * ldg + b];
    }
    for (Py_ssize_t f = 0; f < rows; f++) {
        const double* r = c + f * kp;
        const double* cb = r + b0;
        const double c0 = r[a0], c1 = r[a0 + 1], c2 = r[a0 + 2], c3 = r[a0 + 3];
        for (int b = 0; b < 8; b++) s0[b] = FASTKM_MADD(c0, cb[b], s0[b]);
        for (int b = 0; b < 8; b++) s1[b] = FASTKM_MADD(c1, cb[b], s1[b]);
        for (int b = 0; b < 8; b++) s2[b] = FASTKM_MADD(c2, cb[b], s2[b]);
        for (int b = 0; b < 8; b++) s3[b] = FASTKM_MADD(c3, cb[b], s3[b]);
    }
    for (int b = 0; b < 8; b++) {
        g[b] = s0[b];
        g[ldg + b] = s1[b];
        g[2 * ldg + b] = s2[b];
        g[3 * ldg + b] = s3[b];
    }
}

#endif
