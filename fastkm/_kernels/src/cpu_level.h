/* fastkm: which x86-64 micro-architecture level this CPU (and OS) runs:
 * 4 = AVX-512 F/BW/CD/DQ/VL, 3 = AVX2 + FMA + BMI2, 1 = anything else. */
#ifndef FASTKM_CPU_LEVEL_H
#define FASTKM_CPU_LEVEL_H

static inline int fastkm_x86_level(void) {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("bmi2")) {
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
                && __builtin_cpu_supports("avx512vl"))
            return 4;
        return 3;
    }
#endif
    return 1;
}

#endif
