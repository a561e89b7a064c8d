/* The integer engine, layer by layer (see qsearch/quant/integer.py, which this reproduces exactly):
 *   acc = W h + b                       W: QP_WEIGHT_BITS-bit signed, packed; b: at the accumulator scale
 *   h'  = out_min + #{k : T_k <= acc}   thresholds T (non-decreasing) requantize, ReLU included
 * Activations live in two stack buffers of QP_MAX_DIM int16_t: that is the whole RAM need. */
#include "qpolicy.h"

typedef struct {
    uint16_t n_in, n_out;
    const uint8_t *weights;     /* n_out x n_in, row-major, QP_WEIGHT_BITS bits each, one
                                   * little-endian bit stream (weight i at bit i * QP_WEIGHT_BITS) */
    const qp_acc_t *bias;       /* n_out */
    const qp_acc_t *thresholds; /* n_thresholds, non-decreasing */
    uint16_t n_thresholds;
    int16_t out_min;            /* 0 for hidden (unsigned) layers, -2^(bits-1) for the output */
} qp_layer;

#include "qpolicy_model.h"

#define WEIGHT_MASK ((1u << QP_WEIGHT_BITS) - 1u)
#define WEIGHT_SIGN (1u << (QP_WEIGHT_BITS - 1))

/* How many thresholds are <= acc (binary search; thresholds may repeat). */
static uint16_t count_reached(qp_acc_t acc, const qp_acc_t *t, uint16_t n)
{
    uint16_t lo = 0, hi = n;
    while (lo < hi) {
        const uint16_t mid = (uint16_t)((lo + hi) >> 1);
        if (t[mid] <= acc) {
            lo = (uint16_t)(mid + 1u);
        } else {
            hi = mid;
        }
    }
    return lo;
}

void qpolicy_run(const int8_t x[QP_OBS_DIM], int8_t o[QP_ACT_DIM])
{
    int16_t buf_a[QP_MAX_DIM], buf_b[QP_MAX_DIM];
    int16_t *h = buf_a, *next = buf_b, *swap;
    uint16_t l, r, c;

    for (c = 0; c < QP_OBS_DIM; ++c) {
        h[c] = x[c];
    }
    for (l = 0; l < QP_N_LAYERS; ++l) {
        const qp_layer *layer = &qp_layers[l];
        const uint8_t *packed = layer->weights;
        uint32_t bits = 0, avail = 0; /* bit reader over the layer's weight stream */
        for (r = 0; r < layer->n_out; ++r) {
            qp_acc_t acc = layer->bias[r];
            for (c = 0; c < layer->n_in; ++c) {
                uint32_t v;
                if (avail < QP_WEIGHT_BITS) {
                    bits |= (uint32_t)*packed++ << avail;
                    avail += 8u;
                }
                v = bits & WEIGHT_MASK;
                bits >>= QP_WEIGHT_BITS;
                avail -= QP_WEIGHT_BITS;
                /* sign extension without shifting a negative number: (v ^ sign) - sign */
                acc += (qp_acc_t)((int32_t)(v ^ WEIGHT_SIGN) - (int32_t)WEIGHT_SIGN) * h[c];
            }
            next[r] = (int16_t)(layer->out_min + (int16_t)count_reached(acc, layer->thresholds, layer->n_thresholds));
        }
        swap = h;
        h = next;
        next = swap;
    }
    for (c = 0; c < QP_ACT_DIM; ++c) {
        o[c] = (int8_t)h[c];
    }
}

void qpolicy_act_q15(const int8_t x[QP_OBS_DIM], int16_t a_q15[QP_ACT_DIM])
{
    int8_t o[QP_ACT_DIM];
    uint16_t c;

    qpolicy_run(x, o);
    for (c = 0; c < QP_ACT_DIM; ++c) {
        a_q15[c] = qp_tanh_lut[o[c] - QP_OUT_MIN];
    }
}

/* rint (ties to even) then clip to [lo, hi], without libm. Clipping first gives the same result
 * because lo and hi are integers, and it keeps |y| small enough for the int cast and an exact y - t. */
static int32_t round_clip(float y, int32_t lo, int32_t hi)
{
    int32_t t;
    float frac;

    if (y != y) {
        return 0;
    }
    if (y <= (float)lo) {
        return lo;
    }
    if (y >= (float)hi) {
        return hi;
    }
    t = (int32_t)y; /* towards zero */
    frac = y - (float)t;
    if (frac > 0.5f || (frac == 0.5f && t % 2 != 0)) {
        return t + 1;
    }
    if (frac < -0.5f || (frac == -0.5f && t % 2 != 0)) {
        return t - 1;
    }
    return t;
}

void qpolicy_quantize_obs(const float obs[QP_OBS_DIM], int8_t x[QP_OBS_DIM])
{
    uint16_t c;

    for (c = 0; c < QP_OBS_DIM; ++c) {
        /* One operation per assignment: with C99's standard excess precision every step is rounded
         * to single precision, also on x87 (-m32), as NumPy's float32 arithmetic is. */
        const float centred = obs[c] - qp_obs_mean[c];
        const float normalized = centred / qp_obs_std[c];
        const float y = normalized / qp_input_scale;
        x[c] = (int8_t)round_clip(y, QP_IN_MIN, QP_IN_MAX);
    }
}

void qpolicy_action_float(const int16_t a_q15[QP_ACT_DIM], float action[QP_ACT_DIM])
{
    uint16_t c;

    for (c = 0; c < QP_ACT_DIM; ++c) {
        action[c] = (float)a_q15[c] / (float)QP_LUT_ONE * qp_action_scale[c] + qp_action_bias[c];
    }
}
