/* qpolicy: an integer-only policy exported by qsearch (`qsearch export ... --format c`).
 *
 * C99, no heap, no static RAM, no floating point after qpolicy_quantize_obs.
 * The model itself (dimensions, packed weights, thresholds, tanh table) is in the generated
 * qpolicy_config.h and qpolicy_model.h; this header and qpolicy.c are the same for every model.
 *
 * A recurrent policy (QP_RECURRENT 1: a GRU encoder before the MLP) remembers: its hidden state is a
 * qpolicy_state the caller owns, zeroed by qpolicy_reset at every episode's start and carried from
 * one qpolicy_step* call to the next. Its export has the qpolicy_step* functions instead of
 * qpolicy_run and qpolicy_act_q15, which would act without the state.
 */
#ifndef QPOLICY_H
#define QPOLICY_H

#include <stdint.h>

#include "qpolicy_config.h"

#ifndef QP_RECURRENT /* a stateless export's config does not mention it */
#define QP_RECURRENT 0
#endif

#if QP_ACC_BITS <= 32
typedef int32_t qp_acc_t;
#else
typedef int64_t qp_acc_t;
#endif

#if QP_RECURRENT
#if QP_STATE_BITS <= 8
typedef int8_t qp_state_t;
#else
typedef int16_t qp_state_t;
#endif

/* The recurrent policy's memory between steps: the GRU's hidden state h, QP_STATE_BITS-bit signed
 * integers. Any storage class; only qpolicy_reset and qpolicy_step* write it. */
typedef struct {
    qp_state_t h[QP_STATE_DIM];
} qpolicy_state;

/* The state at an episode's start (zero). Call it before the first step of every episode. */
void qpolicy_reset(qpolicy_state *state);

/* One step: integer observation (signed, QP_IN_BITS bits) and the state -> output integers o (signed,
 * QP_OUT_BITS bits), the pre-tanh action in units of the output scale; the state moves on one step.
 * Integer arithmetic only. The stateful qpolicy_run. */
void qpolicy_step_run(qpolicy_state *state, const int8_t x[QP_OBS_DIM], int8_t o[QP_ACT_DIM]);

/* One step: integer observation -> actions in Q1.15 (a_q15 / QP_LUT_ONE in [-1, 1]). The stateful
 * qpolicy_act_q15. */
void qpolicy_step_q15(qpolicy_state *state, const int8_t x[QP_OBS_DIM], int16_t a_q15[QP_ACT_DIM]);

/* One step from the sensors to the actuators: qpolicy_quantize_obs, qpolicy_step_q15, then
 * qpolicy_action_float. */
void qpolicy_step(qpolicy_state *state, const float obs[QP_OBS_DIM], float action[QP_ACT_DIM]);
#else
/* Integer observation (signed, QP_IN_BITS bits) -> output integers o (signed, QP_OUT_BITS bits),
 * the pre-tanh action in units of the output scale. Integer arithmetic only. */
void qpolicy_run(const int8_t x[QP_OBS_DIM], int8_t o[QP_ACT_DIM]);

/* Integer observation -> actions in Q1.15: action in [-1, 1] is a_q15 / QP_LUT_ONE (tanh table). */
void qpolicy_act_q15(const int8_t x[QP_OBS_DIM], int16_t a_q15[QP_ACT_DIM]);
#endif

/* The only floating-point step, for a device that reads float sensors: raw observation ->
 * integer observation, x = clip(rint(((obs - mean) / std) / input_scale)) in IEEE single precision,
 * ties to even, exactly as the Python engine. A NaN entry maps to 0. */
void qpolicy_quantize_obs(const float obs[QP_OBS_DIM], int8_t x[QP_OBS_DIM]);

/* Q1.15 action -> the environment's units: a_q15 / QP_LUT_ONE * action_scale + action_bias. */
void qpolicy_action_float(const int16_t a_q15[QP_ACT_DIM], float action[QP_ACT_DIM]);

#endif
