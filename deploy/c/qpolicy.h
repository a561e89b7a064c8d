/* qpolicy: an integer-only policy exported by qsearch (`qsearch export ... --format c`).
 *
 * C99, no heap, no static RAM, no floating point after qpolicy_quantize_obs.
 * The model itself (dimensions, packed weights, thresholds, tanh table) is in the generated
 * qpolicy_config.h and qpolicy_model.h; this header and qpolicy.c are the same for every model.
 */
#ifndef QPOLICY_H
#define QPOLICY_H

#include <stdint.h>

#include "qpolicy_config.h"

#if QP_ACC_BITS <= 32
typedef int32_t qp_acc_t;
#else
typedef int64_t qp_acc_t;
#endif

/* Integer observation (signed, QP_IN_BITS bits) -> output integers o (signed, QP_OUT_BITS bits),
 * the pre-tanh action in units of the output scale. Integer arithmetic only. */
void qpolicy_run(const int8_t x[QP_OBS_DIM], int8_t o[QP_ACT_DIM]);

/* Integer observation -> actions in Q1.15: action in [-1, 1] is a_q15 / QP_LUT_ONE (tanh table). */
void qpolicy_act_q15(const int8_t x[QP_OBS_DIM], int16_t a_q15[QP_ACT_DIM]);

/* The only floating-point step, for a device that reads float sensors: raw observation ->
 * integer observation, x = clip(rint(((obs - mean) / std) / input_scale)) in IEEE single precision,
 * ties to even, exactly as the Python engine. A NaN entry maps to 0. */
void qpolicy_quantize_obs(const float obs[QP_OBS_DIM], int8_t x[QP_OBS_DIM]);

/* Q1.15 action -> the environment's units: a_q15 / QP_LUT_ONE * action_scale + action_bias. */
void qpolicy_action_float(const int16_t a_q15[QP_ACT_DIM], float action[QP_ACT_DIM]);

#endif
