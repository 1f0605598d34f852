/* fastkm: the k-means++ seeding tile for many features, in intrinsics.
 *
 * A seeding step scores up to 16 candidate centers against every row:
 * D^2 = ||x||^2 + 2 (0.5 ||c||^2 - x.c), then w min(D^2, closest) summed per
 * (candidate, lane). The 8 rows x 8 candidates dot-product tile and its
 * epilogues live here; seeding_dot.pyx drives them and keeps a scalar
 * fallback with the same operations in the same order for targets without
 * AVX/FMA (FASTKM_TILE, FASTKM_EPI and FASTKM_EPI_T are 0 there), so every
 * build gives the bits of its own scalar loop.
 */
#ifndef FASTKM_SEED_TILE_H
#define FASTKM_SEED_TILE_H

#include <Python.h>
#include <string.h>

/* The 8 rows x 8 candidates tile of _half_dots in AVX/FMA intrinsics, one
   vector of candidates per row. GCC's own vectorisation of the Cython loop
   pairs rows into one wide vector and spends a shuffle per pair and feature
   on it. Each lane is the same chain of fused multiply-adds from the same
   start in feature order: fnmadd(x, c, a) = fma(-x, c, a) with one
   rounding, so the bits are the scalar loop's on FMA targets. */
#if defined(__AVX__) && defined(__FMA__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FASTKM_TILE 1
#define FASTKM_ROWS8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
static inline void fastkm_half_dots_f(const float** p, Py_ssize_t d, const float* ct,
                                      const float* hn, float* out) {
    __m256 h = _mm256_loadu_ps(hn), c;
    Py_ssize_t f;
    #define FASTKM_DECL(r) __m256 a##r = h; const float* p##r = p[r];
    FASTKM_ROWS8(FASTKM_DECL)
    #undef FASTKM_DECL
    for (f = 0; f < d; f++) {
        c = _mm256_loadu_ps(ct + f * 8);
        #define FASTKM_FMA(r) a##r = _mm256_fnmadd_ps(_mm256_broadcast_ss(p##r + f), c, a##r);
        FASTKM_ROWS8(FASTKM_FMA)
        #undef FASTKM_FMA
    }
    #define FASTKM_STORE(r) _mm256_storeu_ps(out + 8 * r, a##r);
    FASTKM_ROWS8(FASTKM_STORE)
    #undef FASTKM_STORE
}
static inline void fastkm_half_dots_d(const double** p, Py_ssize_t d, const double* ct,
                                      const double* hn, double* out) {
    Py_ssize_t f;
#if defined(__AVX512F__)
    __m512d h = _mm512_loadu_pd(hn), c;
    #define FASTKM_DECL(r) __m512d a##r = h; const double* p##r = p[r];
    FASTKM_ROWS8(FASTKM_DECL)
    #undef FASTKM_DECL
    for (f = 0; f < d; f++) {
        c = _mm512_loadu_pd(ct + f * 8);
        #define FASTKM_FMA(r) a##r = _mm512_fnmadd_pd(_mm512_set1_pd(p##r[f]), c, a##r);
        FASTKM_ROWS8(FASTKM_FMA)
        #undef FASTKM_FMA
    }
    #define FASTKM_STORE(r) _mm512_storeu_pd(out + 8 * r, a##r);
    FASTKM_ROWS8(FASTKM_STORE)
    #undef FASTKM_STORE
#else
    __m256d hl = _mm256_loadu_pd(hn), hh = _mm256_loadu_pd(hn + 4), cl, ch, x;
    #define FASTKM_DECL(r) __m256d l##r = hl, u##r = hh; const double* p##r = p[r];
    FASTKM_ROWS8(FASTKM_DECL)
    #undef FASTKM_DECL
    for (f = 0; f < d; f++) {
        cl = _mm256_loadu_pd(ct + f * 8);
        ch = _mm256_loadu_pd(ct + f * 8 + 4);
        #define FASTKM_FMA(r) x = _mm256_broadcast_sd(p##r + f); \
            l##r = _mm256_fnmadd_pd(x, cl, l##r); u##r = _mm256_fnmadd_pd(x, ch, u##r);
        FASTKM_ROWS8(FASTKM_FMA)
        #undef FASTKM_FMA
    }
    #define FASTKM_STORE(r) _mm256_storeu_pd(out + 8 * r, l##r); \
        _mm256_storeu_pd(out + 8 * r + 4, u##r);
    FASTKM_ROWS8(FASTKM_STORE)
    #undef FASTKM_STORE
#endif
}
#else
#define FASTKM_TILE 0
#define fastkm_half_dots_f(p, d, ct, hn, out) ((void)0)
#define fastkm_half_dots_d(p, d, ct, hn, out) ((void)0)
#endif

/* ---- */

/* The per-row epilogue of the seeding tile for 8 candidates of float64 data
   (float32 has fastkm_epi_rows8_f), in GCC/Clang
   vector types (the scalar loop compiles to compare-and-branch code):
   D^2 = (float) max(2 h + xx, 0), and lane sum s += w * min(D^2, c). The
   same operations per candidate as the scalar loop, so the same bits: 2 h
   is exact, the max and min are selections, the conversions round the
   same way, and s + w * m is contracted to an FMA exactly where the scalar
   statement is (default -ffp-contract=fast on FMA targets). */
#if (defined(__GNUC__) && __GNUC__ >= 9) || defined(__clang__)
#define FASTKM_EPI 1
typedef double fastkm_ed8 __attribute__((vector_size(64), aligned(8)));
typedef long long fastkm_el8 __attribute__((vector_size(64), aligned(8)));
#define FASTKM_EPILOGUE8(NAME, T, VT)                                         \
static inline void NAME(const T* o, double xi, double c, double w, T* v,      \
                        double* s) {                                          \
    VT ov; fastkm_ed8 h, hv, sv, cv; fastkm_el8 keep;                         \
    memcpy(&ov, o, sizeof(VT));                                               \
    h = __builtin_convertvector(ov, fastkm_ed8) * 2.0 + xi;                   \
    keep = h > 0.0;                                                           \
    h = (fastkm_ed8)((fastkm_el8)h & keep);                                   \
    ov = __builtin_convertvector(h, VT);                                      \
    memcpy(v, &ov, sizeof(VT));                                               \
    hv = __builtin_convertvector(ov, fastkm_ed8);                             \
    cv = (fastkm_ed8){0} + c;                                                 \
    keep = hv < cv;                                                           \
    hv = (fastkm_ed8)(((fastkm_el8)hv & keep) | ((fastkm_el8)cv & ~keep));    \
    memcpy(&sv, s, sizeof(sv));                                               \
    sv = sv + w * hv;                                                         \
    memcpy(s, &sv, sizeof(sv));                                               \
}
FASTKM_EPILOGUE8(fastkm_epilogue8_d, double, fastkm_ed8)
#else
#define FASTKM_EPI 0
#define fastkm_epilogue8_d(o, xi, c, w, v, s) ((void)0)
#endif

/* ---- */

/* The seeding epilogue for float32 data with the rows as vector lanes: the
   8 x 8 tile (rows x candidates) is transposed in registers, then each
   candidate's 8 rows go through the scalar loop's operations at once:
   D^2 = (float) max(2 h + xx, 0) (2 h is exact, so fma(2, h, xx) rounds as
   the scalar 2 h + xx), stored as 8 consecutive floats of d2, and the lane
   sums s[t][r] = fma(w, min(D^2, closest), s[t][r]) (contracted as the
   scalar statement is on FMA targets). MAXPD/MINPD return their second
   operand on NaN or equal zeros: exactly the scalar selections h > 0 ? h : 0
   and v < c ? v : c. Only the m real candidates are computed. */
#if defined(__AVX__) && defined(__FMA__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FASTKM_EPI_T 1
static inline void fastkm_transpose8(__m256* r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20); r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20); r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31); r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31); r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
static inline void fastkm_epi_rows8_f(const float* out, Py_ssize_t m, const double* xx,
                                      const double* cl, const float* sw, float* d2,
                                      Py_ssize_t n, double* s) {
    __m256 t[8];
    Py_ssize_t j;
    for (j = 0; j < 8; j++) t[j] = _mm256_loadu_ps(out + 8 * j);
    fastkm_transpose8(t);
#if defined(__AVX512F__)
    __m512d xi = _mm512_loadu_pd(xx), c = _mm512_loadu_pd(cl);
    __m512d w = _mm512_cvtps_pd(_mm256_loadu_ps(sw)), z = _mm512_setzero_pd();
    __m512d two = _mm512_set1_pd(2.0), h;
    __m256 v;
    for (j = 0; j < m; j++) {
        h = _mm512_max_pd(_mm512_fmadd_pd(two, _mm512_cvtps_pd(t[j]), xi), z);
        v = _mm512_cvtpd_ps(h);
        _mm256_storeu_ps(d2 + j * n, v);
        h = _mm512_min_pd(_mm512_cvtps_pd(v), c);
        _mm512_storeu_pd(s + 8 * j, _mm512_fmadd_pd(w, h, _mm512_loadu_pd(s + 8 * j)));
    }
#else
    __m256d xl = _mm256_loadu_pd(xx), xh = _mm256_loadu_pd(xx + 4);
    __m256d cl4 = _mm256_loadu_pd(cl), ch4 = _mm256_loadu_pd(cl + 4);
    __m128 w4l = _mm_loadu_ps(sw), w4h = _mm_loadu_ps(sw + 4);
    __m256d wl = _mm256_cvtps_pd(w4l), wh = _mm256_cvtps_pd(w4h), z = _mm256_setzero_pd();
    __m256d two = _mm256_set1_pd(2.0), hl, hh;
    __m128 vl, vh;
    for (j = 0; j < m; j++) {
        hl = _mm256_max_pd(_mm256_fmadd_pd(two, _mm256_cvtps_pd(_mm256_castps256_ps128(t[j])), xl), z);
        hh = _mm256_max_pd(_mm256_fmadd_pd(two, _mm256_cvtps_pd(_mm256_extractf128_ps(t[j], 1)), xh), z);
        vl = _mm256_cvtpd_ps(hl);
        vh = _mm256_cvtpd_ps(hh);
        _mm_storeu_ps(d2 + j * n, vl);
        _mm_storeu_ps(d2 + j * n + 4, vh);
        hl = _mm256_min_pd(_mm256_cvtps_pd(vl), cl4);
        hh = _mm256_min_pd(_mm256_cvtps_pd(vh), ch4);
        _mm256_storeu_pd(s + 8 * j, _mm256_fmadd_pd(wl, hl, _mm256_loadu_pd(s + 8 * j)));
        _mm256_storeu_pd(s + 8 * j + 4, _mm256_fmadd_pd(wh, hh, _mm256_loadu_pd(s + 8 * j + 4)));
    }
#endif
}
#else
#define FASTKM_EPI_T 0
#define fastkm_epi_rows8_f(out, m, xx, cl, sw, d2, n, s) ((void)0)
#endif
#endif
