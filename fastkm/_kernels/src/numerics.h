/* fastkm: the rounding order of every distance, and a prefetch hint.
 *
 * FASTKM_MADD(a, b, c) is a*b + c with one rounding (a fused multiply-add)
 * where the target has FMA, else two. Every squared distance in fastkm is
 * t0*t0 followed by one FASTKM_MADD per further feature, written out
 * explicitly, so that the compiler's own contraction choices can never make
 * two code paths (Lloyd's tiles, Hamerly's scans, Elkan) round the same
 * distance differently.
 */
#ifndef FASTKM_NUMERICS_H
#define FASTKM_NUMERICS_H

#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define FASTKM_MADD(a, b, c) \
    _Generic((a), float: __builtin_fmaf, default: __builtin_fma)((a), (b), (c))
#else
#define FASTKM_MADD(a, b, c) ((a) * (b) + (c))
#endif

/* A read hint for memory needed soon (a no-op where the compiler has none). */
#if defined(__GNUC__) || defined(__clang__)
#define FASTKM_PREFETCH(p) __builtin_prefetch((p))
#else
#define FASTKM_PREFETCH(p) ((void)(p))
#endif

#endif
