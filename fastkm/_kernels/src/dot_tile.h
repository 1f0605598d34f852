/* fastkm: the register tile of the many-feature assignment kernel.
 *
 * DOT_ROWS rows (vector lanes) x DOT_CT centers (broadcasts), sized so that
 * the DOT_CT x DOT_ROWS accumulators, the row vectors and one broadcast fit
 * the target's vector registers (32 zmm with AVX-512, 16 ymm with AVX2).
 */
#ifndef FASTKM_DOT_TILE_H
#define FASTKM_DOT_TILE_H

#if defined(__AVX512F__)
#define FASTKM_DOT_ROWS_F 64
#define FASTKM_DOT_ROWS_D 32
#elif defined(__AVX__)
#define FASTKM_DOT_ROWS_F 16
#define FASTKM_DOT_ROWS_D 8
#else
#define FASTKM_DOT_ROWS_F 8
#define FASTKM_DOT_ROWS_D 4
#endif
#define FASTKM_DOT_CT 6
#define FASTKM_DOT_ROWS_MAX 64

#endif
