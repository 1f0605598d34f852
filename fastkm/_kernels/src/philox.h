/* Counter-based random numbers for k-means|| sampling: Philox4x32-10
 * (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
 *
 * A draw is a pure function of (key, round, row): no state, no order. Row i
 * of round t gets the same uniform whichever thread, block, chunk or machine
 * computes it, which is what makes the sampling independent of the thread
 * count and of how the rows are split.
 *
 * fastkm_philox4x32_10 matches the Random123 known-answer vectors (tested in
 * tests/test_scalable.py through scalable.philox_block).
 */
#ifndef FASTKM_PHILOX_H
#define FASTKM_PHILOX_H

#include <stdint.h>

#define FASTKM_PHILOX_M0 0xD2511F53u
#define FASTKM_PHILOX_M1 0xCD9E8D57u
#define FASTKM_PHILOX_W0 0x9E3779B9u
#define FASTKM_PHILOX_W1 0xBB67AE85u

static inline void fastkm_philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2],
                                        uint32_t out[4]) {
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = key_in[0], k1 = key_in[1];
    int r;
    for (r = 0; r < 10; r++) {
        uint64_t p0, p1;
        uint32_t n0, n1, n2, n3;
        if (r > 0) {  /* the key schedule: bumped before rounds 2..10 */
            k0 += FASTKM_PHILOX_W0;
            k1 += FASTKM_PHILOX_W1;
        }
        p0 = (uint64_t)FASTKM_PHILOX_M0 * c0;
        p1 = (uint64_t)FASTKM_PHILOX_M1 * c2;
        n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        n1 = (uint32_t)p1;
        n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        n3 = (uint32_t)p0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* A uniform double in [0, 1) with 53 random bits for row `row` of sampling
 * round `round` under the 64-bit key (key0, key1): counter (row low word, row
 * high word, round, 0). */
static inline double fastkm_uniform(uint32_t key0, uint32_t key1, uint32_t round, uint64_t row) {
    uint32_t ctr[4], key[2], out[4];
    ctr[0] = (uint32_t)row;
    ctr[1] = (uint32_t)(row >> 32);
    ctr[2] = round;
    ctr[3] = 0u;
    key[0] = key0;
    key[1] = key1;
    fastkm_philox4x32_10(ctr, key, out);
    /* 27 + 26 bits, as MT19937's genrand_res53 */
    return ((double)(out[0] >> 5) * 67108864.0 + (double)(out[1] >> 6)) * (1.0 / 9007199254740992.0);
}

#endif
