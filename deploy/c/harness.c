/* Host harness for an exported policy (not for the device): the bit-exactness test and the latency
 * benchmark drive the real qpolicy.c through it.
 *
 *   harness float     stdin: float32 observations, QP_OBS_DIM per row
 *                     stdout per row: x (int8 x QP_OBS_DIM), o (int8 x QP_ACT_DIM), a_q15 (int16 x QP_ACT_DIM)
 *   harness int       stdin: int8 integer observations, QP_OBS_DIM per row
 *                     stdout per row: o (int8 x QP_ACT_DIM), a_q15 (int16 x QP_ACT_DIM)
 *   harness bench N   N calls of qpolicy_act_q15 on 1024 varied inputs; prints CPU nanoseconds per call (CPU time: the machine may be shared)
 *
 * A recurrent policy's build (QP_RECURRENT) has, instead of float and int:
 *   harness steps     stdin: per step 1 + QP_OBS_DIM float32, an episode-start flag (non-zero: reset the
 *                     state first) and the observation; the state is carried from row to row
 *                     stdout per step: step_row's bytes (step_row.h)
 * and bench N calls qpolicy_step_q15 with the state carried, reset every 1024 steps.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qpolicy.h"

#define BENCH_INPUTS 1024

#if QP_RECURRENT
#include "step_row.h"

static int run_steps(void)
{
    float row[1 + QP_OBS_DIM];
    uint8_t out[STEP_ROW_BYTES];
    qpolicy_state state;

    qpolicy_reset(&state);
    while (fread(row, sizeof row, 1, stdin) == 1) {
        step_row(&state, row[0] != 0.0f, row + 1, out);
        if (fwrite(out, sizeof out, 1, stdout) != 1) {
            return 1;
        }
    }
    return ferror(stdin) ? 1 : 0;
}
#else

static int run_float(void)
{
    float obs[QP_OBS_DIM];
    int8_t x[QP_OBS_DIM], o[QP_ACT_DIM];
    int16_t a[QP_ACT_DIM];

    while (fread(obs, sizeof obs, 1, stdin) == 1) {
        qpolicy_quantize_obs(obs, x);
        qpolicy_run(x, o);
        qpolicy_act_q15(x, a);
        if (fwrite(x, sizeof x, 1, stdout) != 1 || fwrite(o, sizeof o, 1, stdout) != 1 ||
            fwrite(a, sizeof a, 1, stdout) != 1) {
            return 1;
        }
    }
    return ferror(stdin) ? 1 : 0;
}

static int run_int(void)
{
    int8_t x[QP_OBS_DIM], o[QP_ACT_DIM];
    int16_t a[QP_ACT_DIM];

    while (fread(x, sizeof x, 1, stdin) == 1) {
        qpolicy_run(x, o);
        qpolicy_act_q15(x, a);
        if (fwrite(o, sizeof o, 1, stdout) != 1 || fwrite(a, sizeof a, 1, stdout) != 1) {
            return 1;
        }
    }
    return ferror(stdin) ? 1 : 0;
}
#endif

static int bench(long calls)
{
    static int8_t inputs[BENCH_INPUTS][QP_OBS_DIM];
    int16_t a[QP_ACT_DIM];
    uint32_t state = 12345u, sink = 0;
    struct timespec t0, t1;
    long n;
    int i, c;
    double ns;
#if QP_RECURRENT
    qpolicy_state s;
#endif

    for (i = 0; i < BENCH_INPUTS; ++i) {
        for (c = 0; c < QP_OBS_DIM; ++c) {
            state = state * 1664525u + 1013904223u; /* LCG: varied inputs over the whole range */
            inputs[i][c] = (int8_t)(QP_IN_MIN + (int32_t)((state >> 16) % (uint32_t)(QP_IN_MAX - QP_IN_MIN + 1)));
        }
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    for (n = 0; n < calls; ++n) {
#if QP_RECURRENT
        if (n % BENCH_INPUTS == 0) {
            qpolicy_reset(&s);
        }
        qpolicy_step_q15(&s, inputs[n % BENCH_INPUTS], a);
#else
        qpolicy_act_q15(inputs[n % BENCH_INPUTS], a);
#endif
        sink += (uint32_t)a[0];
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("%.2f ns per action (%ld calls, checksum %lu)\n", ns / (double)calls, calls, (unsigned long)sink);
    return 0;
}

int main(int argc, char **argv)
{
#if QP_RECURRENT
    if (argc == 2 && strcmp(argv[1], "steps") == 0) {
        return run_steps();
    }
#else
    if (argc == 2 && strcmp(argv[1], "float") == 0) {
        return run_float();
    }
    if (argc == 2 && strcmp(argv[1], "int") == 0) {
        return run_int();
    }
#endif
    if (argc == 3 && strcmp(argv[1], "bench") == 0) {
        return bench(atol(argv[2]));
    }
    fprintf(stderr, "usage: %s %s | bench N\n", argv[0], QP_RECURRENT ? "steps" : "float | int");
    return 2;
}
