/* Emulator harness for an exported policy on a microcontroller core (not for a real device):
 * qsearch/deploy/mcu.py links it with qpolicy.c into one image, runs it under unicorn and calls
 * these functions directly, with their buffers in a memory region it maps itself.
 * A separate translation unit, so the engine's functions are measured as the firmware gets them. */
#include "qpolicy.h"

#if QP_RECURRENT
#include "step_row.h"

/* The state's size for the RAM figure: the caller keeps it, so no section of the engine holds it. */
uint32_t mcu_state_bytes(void)
{
    return (uint32_t)sizeof(qpolicy_state);
}

/* Steps with the state carried: rows of 1 + QP_OBS_DIM floats (an episode-start flag, then the
 * observation) -> step_row's bytes per row, byte for byte what the host harness writes. The state is
 * the caller's, so it carries over from one call to the next. */
void mcu_steps(qpolicy_state *state, const float *rows, uint32_t n, uint8_t *out)
{
    uint32_t i;

    for (i = 0; i < n; ++i) {
        const float *row = rows + i * (1u + QP_OBS_DIM);
        step_row(state, row[0] != 0.0f, row + 1, out + i * STEP_ROW_BYTES);
    }
}

/* One step from a float observation, as a control loop takes it (the recurrent mcu_action_from_float):
 * the input quantization, then the GRU and the MLP, the state carried. */
void mcu_step_from_float(qpolicy_state *state, const float *obs, int8_t *x, int8_t *o)
{
    qpolicy_quantize_obs(obs, x);
    qpolicy_step_run(state, x, o);
}
#else
/* Float observations -> per row x (int8 x QP_OBS_DIM), o (int8 x QP_ACT_DIM), a_q15 (int16 x
 * QP_ACT_DIM), byte for byte the rows that the host harness writes. */
void mcu_batch(const float *obs, uint32_t n, uint8_t *out)
{
    uint32_t i;
    uint16_t c;

    for (i = 0; i < n; ++i) {
        int8_t x[QP_OBS_DIM], o[QP_ACT_DIM];
        int16_t a[QP_ACT_DIM];
        qpolicy_quantize_obs(obs + i * QP_OBS_DIM, x);
        qpolicy_run(x, o);
        qpolicy_act_q15(x, a);
        for (c = 0; c < QP_OBS_DIM; ++c) {
            *out++ = (uint8_t)x[c];
        }
        for (c = 0; c < QP_ACT_DIM; ++c) {
            *out++ = (uint8_t)o[c];
        }
        for (c = 0; c < QP_ACT_DIM; ++c) { /* little-endian, as on the host */
            *out++ = (uint8_t)((uint16_t)a[c] & 0xffu);
            *out++ = (uint8_t)((uint16_t)a[c] >> 8);
        }
    }
}

/* One action from a float observation, as a control loop takes it: the input quantization, then the
 * network. The emulator counts this call for the instructions per action (the few instructions of
 * this caller included, as a control loop has its own). */
void mcu_action_from_float(const float *obs, int8_t *x, int8_t *o)
{
    qpolicy_quantize_obs(obs, x);
    qpolicy_run(x, o);
}
#endif

/* Every call returns here: the emulator stops when it reaches this address. */
void mcu_halt(void)
{
    for (;;) {
    }
}
