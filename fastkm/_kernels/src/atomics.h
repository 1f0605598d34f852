/* fastkm: the atomic operations the kernels use.
 *
 * fastkm_countdown decrements a shared counter and returns the new value,
 * with acquire-release ordering: the thread that takes it to zero sees every
 * write the others made before their own decrement (Lloyd: the labels of a
 * block's chunks, before that block's sums are taken).
 *
 * fastkm_flag_set / fastkm_flag_get publish and read a flag (release /
 * acquire); fastkm_try_lock / fastkm_unlock guard a section that one thread
 * at a time runs, without waiting (reduce.pxd: merging finished blocks in
 * block order inside the kernel's own parallel region).
 */
#ifndef FASTKM_ATOMICS_H
#define FASTKM_ATOMICS_H

#include <Python.h>

#if defined(__GNUC__) || defined(__clang__)
static inline Py_ssize_t fastkm_countdown(Py_ssize_t* c) {
    return __atomic_sub_fetch(c, 1, __ATOMIC_ACQ_REL);
}
static inline void fastkm_flag_set(int* f) { __atomic_store_n(f, 1, __ATOMIC_SEQ_CST); }
static inline int fastkm_flag_get(int* f) { return __atomic_load_n(f, __ATOMIC_SEQ_CST); }
static inline int fastkm_try_lock(int* l) { return __atomic_exchange_n(l, 1, __ATOMIC_SEQ_CST) == 0; }
static inline void fastkm_unlock(int* l) { __atomic_store_n(l, 0, __ATOMIC_SEQ_CST); }
static inline Py_ssize_t fastkm_load(Py_ssize_t* p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void fastkm_store(Py_ssize_t* p, Py_ssize_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
#elif defined(_MSC_VER)
#include <intrin.h>
static inline Py_ssize_t fastkm_countdown(Py_ssize_t* c) {
#if defined(_WIN64)
    return (Py_ssize_t)_InterlockedDecrement64((volatile __int64*)c);
#else
    return (Py_ssize_t)_InterlockedDecrement((volatile long*)c);
#endif
}
static inline void fastkm_flag_set(int* f) { _InterlockedExchange((volatile long*)f, 1); }
static inline int fastkm_flag_get(int* f) { return (int)_InterlockedOr((volatile long*)f, 0); }
static inline int fastkm_try_lock(int* l) { return _InterlockedExchange((volatile long*)l, 1) == 0; }
static inline void fastkm_unlock(int* l) { _InterlockedExchange((volatile long*)l, 0); }
#if defined(_WIN64)
static inline Py_ssize_t fastkm_load(Py_ssize_t* p) { return (Py_ssize_t)_InterlockedOr64((volatile __int64*)p, 0); }
static inline void fastkm_store(Py_ssize_t* p, Py_ssize_t v) { _InterlockedExchange64((volatile __int64*)p, (__int64)v); }
#else
static inline Py_ssize_t fastkm_load(Py_ssize_t* p) { return (Py_ssize_t)_InterlockedOr((volatile long*)p, 0); }
static inline void fastkm_store(Py_ssize_t* p, Py_ssize_t v) { _InterlockedExchange((volatile long*)p, (long)v); }
#endif
#else
#error "fastkm needs GCC/Clang __atomic builtins or MSVC interlocked intrinsics"
#endif

#endif
