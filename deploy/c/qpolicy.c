/* The integer engine, layer by layer (see qsearch/quant/integer.py, which this reproduces exactly):
 *   acc = W h + b                       W: QP_WEIGHT_BITS-bit signed; b: at the accumulator scale
 *   h'  = out_min + #{k : T_k <= acc}   thresholds T (non-decreasing) requantize, ReLU included
 * Activations live in two stack buffers of QP_BUF_DIM int16_t (the widest layer rounded up to
 * whole blocks of four rows): that is the whole RAM need.
 * Weights come in one of two layouts (QP_LAYOUT_INT8 in qpolicy_config.h): bit-packed, the
 * smallest flash, or one int8_t per weight, read without unpacking.
 *
 * A recurrent policy (QP_RECURRENT) runs one GRU step before the MLP, its two products computed as
 * layers are (requantized to the gate grid by thresholds), then per hidden unit j, g = QP_GATE_BITS:
 *   r, z = #{k : S_k <= ax + ah}                     S: the sigmoid thresholds (rows r, then z)
 *   n    = QP_STATE_MIN + #{k : U_k <= ax_n 2^g + r ah_n}   U: the tanh thresholds
 *   h'   = round_half_even((n 2^g + z (h - n)) / 2^g)       = n + z (h - n) on the state grid
 * and the MLP takes h'. Its stack holds three buffers, the input, ax and ah; the state h is the
 * caller's (qpolicy_state). */
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

#if QP_RECURRENT
#if QP_GATE_TABLE_BITS <= 16
typedef int16_t qp_gate_t; /* the gate thresholds fit int16_t (those of 8-bit gates mostly do) */
#else
typedef int32_t qp_gate_t;
#endif
#endif

#include "qpolicy_model.h"

/* How many thresholds are <= acc. There are 2^b - 1 of them, so a binary search takes exactly b
 * steps of one load, one compare and one conditional add, without data-dependent loop exits;
 * repeated thresholds are fine. `step` is 2^(b-1). The table starts with one unused entry, so
 * threshold k is t[k + 1] and the step's load needs no offset. */
#if !QP_RECURRENT
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
#else
/* The same for the four accumulators of a row block in one loop, out[i] = out_min + the count for
 * s_i. A recurrent build searches so: its GRU products' short rows make the searches weigh, and on
 * Cortex-M4 a step of bench/gru_mcu.py's GRU16 policy took 10,742 instructions instead of 11,246. A
 * stateless build keeps a loop per search, the machine code it was measured with: on the M0, whose
 * eight low registers would also hold the four searches, the joint loop made the paper's Table-1
 * MLPs up to 7% slower (int8 weights). */
static void count_reached4(qp_acc_t s0, qp_acc_t s1, qp_acc_t s2, qp_acc_t s3, const qp_acc_t *t, unsigned step,
                           int16_t out_min, int16_t *out)
{
    const qp_acc_t *p0 = t, *p1 = t, *p2 = t, *p3 = t;

    do {
        if (p0[step] <= s0) {
            p0 += step;
        }
        if (p1[step] <= s1) {
            p1 += step;
        }
        if (p2[step] <= s2) {
            p2 += step;
        }
        if (p3[step] <= s3) {
            p3 += step;
        }
        step >>= 1;
    } while (step > 0u);
    out[0] = (int16_t)(out_min + (int16_t)(p0 - t));
    out[1] = (int16_t)(out_min + (int16_t)(p1 - t));
    out[2] = (int16_t)(out_min + (int16_t)(p2 - t));
    out[3] = (int16_t)(out_min + (int16_t)(p3 - t));
}
#endif

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

/* Kept out of line: inlined into qpolicy_run, its only caller in a stateless build, clang -O2 (zig
 * 0.17) spills more registers in its loops: the paper's Hopper policy took 2,724 instructions per
 * action on Cortex-M4 (int8 weights) instead of 2,302, what it took before this function existed. */
#if defined(__GNUC__)
#define QP_NOINLINE __attribute__((noinline))
#else
#define QP_NOINLINE
#endif

/* Layers one after another, from the input in h: each writes next[r] = out_min + #{k : T_k <= (W h + b)_r}
 * for whole blocks of four rows. h and next are work buffers of the widest layer rounded up to whole
 * blocks; returns the one holding the last layer's output. */
QP_NOINLINE static int16_t *forward(const qp_layer *layers, uint16_t n_layers, int16_t *h, int16_t *next)
{
    int16_t *swap;
    uint16_t l, r, c;

    for (l = 0; l < n_layers; ++l) {
        /* The layer's fields as locals: the stores to next[] (int16_t) could alias the struct's 16-bit
         * fields as far as the compiler knows, and it would reload them after every store. */
        const qp_layer *layer = &layers[l];
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
#if QP_RECURRENT
            count_reached4(s0, s1, s2, s3, thresholds, first_step, out_min, next + r);
#else
            next[r] = (int16_t)(out_min + (int16_t)count_reached(s0, thresholds, first_step));
            next[r + 1u] = (int16_t)(out_min + (int16_t)count_reached(s1, thresholds, first_step));
            next[r + 2u] = (int16_t)(out_min + (int16_t)count_reached(s2, thresholds, first_step));
            next[r + 3u] = (int16_t)(out_min + (int16_t)count_reached(s3, thresholds, first_step));
#endif
        }
        swap = h;
        h = next;
        next = swap;
    }
    return h;
}

/* The MLP's output integers, from its input in h; h and next are QP_BUF_DIM-long work buffers. */
static void mlp(int16_t *h, int16_t *next, int8_t o[QP_ACT_DIM])
{
    uint16_t c;

    h = forward(qp_layers, QP_N_LAYERS, h, next);
    for (c = 0; c < QP_ACT_DIM; ++c) {
        o[c] = (int8_t)h[c];
    }
}

static void tanh_table(const int8_t o[QP_ACT_DIM], int16_t a_q15[QP_ACT_DIM])
{
    uint16_t c;

    for (c = 0; c < QP_ACT_DIM; ++c) {
        a_q15[c] = qp_tanh_lut[o[c] - QP_OUT_MIN];
    }
}

#if !QP_RECURRENT
/* Out of line too, as before forward() existed: inlined into qpolicy_act_q15, it would copy the
 * input loop there (Humanoid's 376 inputs: ~460 bytes more flash on Cortex-M4). */
QP_NOINLINE void qpolicy_run(const int8_t x[QP_OBS_DIM], int8_t o[QP_ACT_DIM])
{
    int16_t buf_a[QP_BUF_DIM], buf_b[QP_BUF_DIM];
    uint16_t c;

    for (c = 0; c < QP_OBS_DIM; ++c) {
        buf_a[c] = x[c];
    }
    mlp(buf_a, buf_b, o);
}

void qpolicy_act_q15(const int8_t x[QP_OBS_DIM], int16_t a_q15[QP_ACT_DIM])
{
    int8_t o[QP_ACT_DIM];

    qpolicy_run(x, o);
    tanh_table(o, a_q15);
}
#else
#define GATE_ONE ((int32_t)1 << QP_GATE_BITS)
#define GATE_STEP (1u << (QP_GATE_BITS - 1)) /* 2^g - 1 thresholds per table: g search steps */
/* |n 2^g + z (h - n)| < 2^(2g+1): adding this makes it non-negative, and as a multiple of 2^(g+1) it
 * keeps the parity of the quotient, which rounding to even looks at. */
#define ROUND_OFFSET ((int32_t)1 << (2 * QP_GATE_BITS + 1))

/* count_reached for a gate table; its steps are constants, so the compiler
 * writes them out. */
static unsigned count_gate(int32_t v, const qp_gate_t *t)
{
    const qp_gate_t *p = t;
    unsigned step = GATE_STEP;

    do {
        if (p[step] <= v) {
            p += step;
        }
        step >>= 1;
    } while (step > 0u);
    return (unsigned)(p - t);
}

/* The gates and the new state from ax and ah (rows r, z, n); h' goes to the state and to out. */
static void gru_update(qp_state_t h[QP_STATE_DIM], const int16_t *ax, const int16_t *ah, int16_t *out)
{
    uint16_t j;

    for (j = 0; j < QP_STATE_DIM; ++j) {
        const int32_t r = (int32_t)count_gate((int32_t)ax[j] + ah[j], qp_sigmoid_thresholds);
        const int32_t z = (int32_t)count_gate((int32_t)ax[QP_STATE_DIM + j] + ah[QP_STATE_DIM + j],
                                              qp_sigmoid_thresholds);
        const int32_t u = (int32_t)ax[2 * QP_STATE_DIM + j] * GATE_ONE + r * ah[2 * QP_STATE_DIM + j];
        const int32_t n = QP_STATE_MIN + (int32_t)count_gate(u, qp_tanh_thresholds);
        /* unsigned from here: right shifts of negative values are implementation-defined in C99 */
        const uint32_t v = (uint32_t)(n * GATE_ONE + z * (h[j] - n) + ROUND_OFFSET);
        const uint32_t q = v >> QP_GATE_BITS;
        const int16_t next = (int16_t)((int32_t)((v + (GATE_ONE >> 1) - 1u + (q & 1u)) >> QP_GATE_BITS) -
                                       (ROUND_OFFSET >> QP_GATE_BITS));
        h[j] = (qp_state_t)next;
        out[j] = next;
    }
}

void qpolicy_reset(qpolicy_state *state)
{
    uint16_t j;

    for (j = 0; j < QP_STATE_DIM; ++j) {
        state->h[j] = 0;
    }
}

void qpolicy_step_run(qpolicy_state *state, const int8_t x[QP_OBS_DIM], int8_t o[QP_ACT_DIM])
{
    /* in: x, then h, then h' (the MLP's input); ax and ah: the products, then the MLP's scratch */
    int16_t in[QP_BUF_DIM], ax[QP_GATE_BUF], ah[QP_GATE_BUF];
    uint16_t c;

    for (c = 0; c < QP_OBS_DIM; ++c) {
        in[c] = x[c];
    }
    forward(&qp_encoder[0], 1, in, ax);
    for (c = 0; c < QP_STATE_DIM; ++c) {
        in[c] = state->h[c];
    }
    forward(&qp_encoder[1], 1, in, ah);
    gru_update(state->h, ax, ah, in);
    mlp(in, ax, o);
}

void qpolicy_step_q15(qpolicy_state *state, const int8_t x[QP_OBS_DIM], int16_t a_q15[QP_ACT_DIM])
{
    int8_t o[QP_ACT_DIM];

    qpolicy_step_run(state, x, o);
    tanh_table(o, a_q15);
}

void qpolicy_step(qpolicy_state *state, const float obs[QP_OBS_DIM], float action[QP_ACT_DIM])
{
    int8_t x[QP_OBS_DIM];
    int16_t a_q15[QP_ACT_DIM];

    qpolicy_quantize_obs(obs, x);
    qpolicy_step_q15(state, x, a_q15);
    qpolicy_action_float(a_q15, action);
}
#endif

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
