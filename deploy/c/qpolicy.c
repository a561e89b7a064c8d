/* The integer engine, layer by layer (see qsearch/quant/integer.py, which this reproduces exactly):
 *   acc = W h + b                       W: QP_WEIGHT_BITS-bit signed; b: at the accumulator scale
 *   h'  = out_min + #{k : T_k <= acc}   thresholds T (non-decreasing) requantize, ReLU included
 * Activations live in two stack buffers of QP_BUF_DIM int16_t (the widest layer rounded up to
 * whole blocks of four rows): that is the whole RAM need.
 * Weights come in one of two layouts (QP_LAYOUT_INT8 in qpolicy_config.h): bit-packed, the
 * smallest flash, or one int8_t per weight, read without unpacking. */
#include "qpolicy.h"

/* Weights in reading order: rows in blocks of four (zero rows pad the last), each block column by
 * column, i.e. weight (r, c) is number (r / 4) * 4 * n_in + c * 4 + r % 4. */
#if QP_LAYOUT_INT8
typedef int8_t qp_weight_t;  /* one weight per byte */
#else
typedef uint8_t qp_weight_t; /* QP_WEIGHT_BITS bits each, one little-endian bit stream (weight i at
                              * bit i * QP_WEIGHT_BITS) */
#endif

typedef struct {
    uint16_t n_in, n_out;
    const qp_weight_t *weights;
    const qp_acc_t *bias;       /* n_out */
    const qp_acc_t *thresholds; /* an unused entry, then n_thresholds = 2^out_bits - 1, non-decreasing */
    uint16_t n_thresholds;
    int16_t out_min;            /* 0 for hidden (unsigned) layers, -2^(bits-1) for the output */
} qp_layer;

#include "qpolicy_model.h"

/* How many thresholds are <= acc. There are 2^b - 1 of them, so a binary search takes exactly b
 * steps of one load, one compare and one conditional add, without data-dependent loop exits;
 * repeated thresholds are fine. `step` is 2^(b-1). The table starts with one unused entry, so
 * threshold k is t[k + 1] and the step's load needs no offset. */
static unsigned count_reached(qp_acc_t acc, const qp_acc_t *t, unsigned step)
{
    const qp_acc_t *p = t;

    do { /* step >= 1: every layer has at least one threshold, so no test before the first step */
        if (p[step] <= acc) {
            p += step;
        }
        step >>= 1;
    } while (step > 0u);
    return (unsigned)(p - t);
}

#define WEIGHT_MASK ((1u << QP_WEIGHT_BITS) - 1u)
#define WEIGHT_SIGN (1u << (QP_WEIGHT_BITS - 1))
/* A QP_WEIGHT_BITS-bit field as a signed number, without shifting a negative one: (u ^ sign) - sign */
#define SIGNED_WEIGHT(u) ((qp_acc_t)((int32_t)((u) ^ WEIGHT_SIGN) - (int32_t)WEIGHT_SIGN))

#if !QP_LAYOUT_INT8
/* Two weights of the packed stream into sa and sb: the reader tops `bits` up to at least two
 * fields (at most 2 * 8 - 1 + 8 = 23 bits held, so a 32-bit word suffices), then takes both. */
#define TAKE_TWO(sa, sb)                                         \
    do {                                                         \
        while (avail < 2u * QP_WEIGHT_BITS) {                    \
            bits |= (uint32_t)*w++ << avail;                     \
            avail += 8u;                                         \
        }                                                        \
        sa += SIGNED_WEIGHT(bits & WEIGHT_MASK) * v;             \
        sb += SIGNED_WEIGHT((bits >> QP_WEIGHT_BITS) & WEIGHT_MASK) * v; \
        bits >>= 2u * QP_WEIGHT_BITS;                            \
        avail -= 2u * QP_WEIGHT_BITS;                            \
    } while (0)
#endif

void qpolicy_run(const int8_t x[QP_OBS_DIM], int8_t o[QP_ACT_DIM])
{
    int16_t buf_a[QP_BUF_DIM], buf_b[QP_BUF_DIM];
    int16_t *h = buf_a, *next = buf_b, *swap;
    uint16_t l, r, c;

    for (c = 0; c < QP_OBS_DIM; ++c) {
        h[c] = x[c];
    }
    for (l = 0; l < QP_N_LAYERS; ++l) {
        /* The layer's fields as locals: the stores to next[] (int16_t) could alias the struct's 16-bit
         * fields as far as the compiler knows, and it would reload them after every store. */
        const qp_layer *layer = &qp_layers[l];
        const uint16_t n_in = layer->n_in, n_out = layer->n_out;
        const unsigned first_step = (layer->n_thresholds + 1u) >> 1;
        const int16_t out_min = layer->out_min;
        const qp_acc_t *bias = layer->bias, *thresholds = layer->thresholds;
        const qp_weight_t *w = layer->weights;
#if !QP_LAYOUT_INT8
        uint32_t bits = 0, avail = 0; /* bit reader over the layer's weight stream */
#endif
        /* Four rows at a time: one activation load serves four multiply-accumulates, and the four
         * rows' weights lie side by side (block-interleaved), so the weights are read in order. */
        for (r = 0; r < n_out; r = (uint16_t)(r + 4u)) {
            /* biases and the activation buffers are padded to whole blocks: no bounds checks here */
            qp_acc_t s0 = bias[r], s1 = bias[r + 1u], s2 = bias[r + 2u], s3 = bias[r + 3u];
            for (c = 0; c < n_in; ++c) {
                const qp_acc_t v = h[c];
#if QP_LAYOUT_INT8
                s0 += w[0] * v;
                s1 += w[1] * v;
                s2 += w[2] * v;
                s3 += w[3] * v;
                w += 4;
#else
                TAKE_TWO(s0, s1);
                TAKE_TWO(s2, s3);
#endif
            }
            next[r] = (int16_t)(out_min + (int16_t)count_reached(s0, thresholds, first_step));
            next[r + 1u] = (int16_t)(out_min + (int16_t)count_reached(s1, thresholds, first_step));
            next[r + 2u] = (int16_t)(out_min + (int16_t)count_reached(s2, thresholds, first_step));
            next[r + 3u] = (int16_t)(out_min + (int16_t)count_reached(s3, thresholds, first_step));
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
