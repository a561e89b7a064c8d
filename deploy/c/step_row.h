/* One step of a recurrent policy through each stateful entry point, as the harnesses (harness.c on the
 * host, mcu_harness.c on the emulated cores) report it to qsearch/deploy/stateful.py, which checks it
 * against the NumPy engine. Not part of the export. */
#ifndef STEP_ROW_H
#define STEP_ROW_H

#include "qpolicy.h"

#if QP_STATE_BITS > 8
#error "a row holds the state as one byte per unit"
#endif

/* x (int8 x QP_OBS_DIM), o (int8 x QP_ACT_DIM), a_q15 (int16 x QP_ACT_DIM), the float action (float32 x
 * QP_ACT_DIM), the new state (int8 x QP_STATE_DIM), then one byte: 1 when the three entry points left
 * the same state. Multi-byte values little-endian. */
#define STEP_ROW_BYTES (QP_OBS_DIM + QP_ACT_DIM + 2 * QP_ACT_DIM + 4 * QP_ACT_DIM + QP_STATE_DIM + 1)

/* The step from `state` (reset first when `start`) through qpolicy_step_run, qpolicy_step_q15 and
 * qpolicy_step, each on its own copy of the state; `state` moves on as qpolicy_step moved it. Loops
 * instead of memcpy and struct assignment: the emulated images link no C library. */
static void step_row(qpolicy_state *state, int start, const float *obs, uint8_t *out)
{
    qpolicy_state by_run, by_q15;
    int8_t x[QP_OBS_DIM], o[QP_ACT_DIM];
    int16_t a[QP_ACT_DIM];
    float action[QP_ACT_DIM];
    uint8_t agree = 1;
    uint16_t c;

    if (start) {
        qpolicy_reset(state);
    }
    for (c = 0; c < QP_STATE_DIM; ++c) {
        by_run.h[c] = by_q15.h[c] = state->h[c];
    }
    qpolicy_quantize_obs(obs, x);
    qpolicy_step_run(&by_run, x, o);
    qpolicy_step_q15(&by_q15, x, a);
    qpolicy_step(state, obs, action);
    for (c = 0; c < QP_OBS_DIM; ++c) {
        *out++ = (uint8_t)x[c];
    }
    for (c = 0; c < QP_ACT_DIM; ++c) {
        *out++ = (uint8_t)o[c];
    }
    for (c = 0; c < QP_ACT_DIM; ++c) {
        *out++ = (uint8_t)((uint16_t)a[c] & 0xffu);
        *out++ = (uint8_t)((uint16_t)a[c] >> 8);
    }
    for (c = 0; c < QP_ACT_DIM; ++c) { /* the float's bytes, as stored: every core here is little-endian */
        const uint8_t *bytes = (const uint8_t *)&action[c];
        *out++ = bytes[0];
        *out++ = bytes[1];
        *out++ = bytes[2];
        *out++ = bytes[3];
    }
    for (c = 0; c < QP_STATE_DIM; ++c) {
        *out++ = (uint8_t)state->h[c];
        if (by_run.h[c] != state->h[c] || by_q15.h[c] != state->h[c]) {
            agree = 0;
        }
    }
    *out = agree;
}

#endif
