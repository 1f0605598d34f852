/* fastkm: a 64-bit hash of a row's bytes (deduplication of repeated rows).
 *
 * 8 bytes at a time through the murmur3 finaliser; equal rows (bitwise) hash
 * equal, which is all the open-addressing tables in dedup.pyx rely on.
 */
#ifndef FASTKM_ROW_HASH_H
#define FASTKM_ROW_HASH_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t fastkm_mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t fastkm_hash_row(const void* row, Py_ssize_t nbytes) {
    const unsigned char* p = (const unsigned char*)row;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)nbytes, w;
    Py_ssize_t i = 0;
    for (; i + 8 <= nbytes; i += 8) {
        memcpy(&w, p + i, 8);
        h = fastkm_mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
    }
    if (i < nbytes) {
        w = 0;
        memcpy(&w, p + i, (size_t)(nbytes - i));
        h = fastkm_mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
    }
    return fastkm_mix64(h);
}

#endif
