/* The engine of a logic-circuit ("LUT") policy, behind the MLP engine's API (qpolicy.h, the same
 * file): an export of a LUT policy holds this file as qpolicy.c, so firmware calls the same functions
 * whichever model it holds. It reproduces qsearch/quant/lut_integer.py's NumPy engine exactly:
 *   x     = #{i : T_i <= (obs - mean) / std}         float32, per feature: the thermometer level, the
 *                                                    integer observation (a NaN reaches no threshold: 0)
 *   bit   = x > i                                    the feature's QP_THERMOMETER_BITS input bits
 *   bit'  = table[node][sum_l bit[conn[node][l]] 2^l] each LUT layer: wiring and a truth table
 *   count = set bits of the action's group           QP_GROUP nodes of the last layer per action
 *   o     = head[action][count]                      the output integer (signed, QP_OUT_BITS bits)
 *   a     = tanh_lut[o - QP_OUT_MIN]                 Q1.15, as the MLP's
 * Bits are packed 32 to a uint32_t word (bit j is bit j % 32 of word j / 32); two stack buffers of
 * QP_BUF_WORDS words, the input bits and then each layer's, are the whole RAM need. */
#include "qpolicy.h"

typedef struct {
    uint16_t nodes;
    const uint16_t *connections; /* nodes * QP_LUT_INPUTS: the input bit that address bit l reads */
    const uint32_t *tables;      /* nodes * 2^QP_LUT_INPUTS bits: node n's output at address a is bit
                                  * n * 2^QP_LUT_INPUTS + a, so every k addresses the same way */
} qp_lut_layer;

#include "qpolicy_model.h"

#define BIT(words, j) (((words)[(j) >> 5] >> ((j) & 31u)) & 1u)

/* The thermometer level of a normalized value: how many thresholds are <= v. The table holds an
 * unused entry, the QP_THERMOMETER_BITS thresholds (non-decreasing) and copies of the last one up to
 * 2 * QP_THRESHOLD_STEP entries, so a binary search of log2(2 * QP_THRESHOLD_STEP) steps without
 * data-dependent exits counts them; a value that reaches a copy reached the last threshold, so the
 * count is capped at QP_THERMOMETER_BITS. A NaN compares false: level 0, as NumPy's. */
static int8_t level(float v)
{
    const float *p = qp_thresholds;
    unsigned step = QP_THRESHOLD_STEP, n;

    do {
        if (p[step] <= v) {
            p += step;
        }
        step >>= 1;
    } while (step > 0u);
    n = (unsigned)(p - qp_thresholds);
    return (int8_t)(n < QP_THERMOMETER_BITS ? n : QP_THERMOMETER_BITS);
}

/* Bits [start, start + n) of zeroed words set: a feature's thermometer, at most two words at a time. */
static void set_bits(uint32_t *words, uint32_t start, uint32_t n)
{
    while (n > 0u) {
        const uint32_t shift = start & 31u;
        const uint32_t take = n < 32u - shift ? n : 32u - shift;
        const uint32_t ones = take == 32u ? 0xffffffffu : (1u << take) - 1u;

        words[start >> 5] |= ones << shift;
        start += take;
        n -= take;
    }
}

/* Set bits in a word, without relying on a compiler builtin (not C99) */
static uint32_t popcount(uint32_t v)
{
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0f0f0f0fu;
    return (v * 0x01010101u) >> 24;
}

/* Set bits among bits [start, start + n): an action's group, a word at a time. */
static uint32_t count_bits(const uint32_t *words, uint32_t start, uint32_t n)
{
    uint32_t total = 0;

    while (n > 0u) {
        const uint32_t shift = start & 31u;
        const uint32_t take = n < 32u - shift ? n : 32u - shift;
        const uint32_t ones = take == 32u ? 0xffffffffu : (1u << take) - 1u;

        total += popcount((words[start >> 5] >> shift) & ones);
        start += take;
        n -= take;
    }
    return total;
}

/* One layer: each node's address from its QP_LUT_INPUTS wired bits, its output bit from its table.
 * Output bits gather in a register and are stored a word at a time; the unused bits of the last word
 * stay 0. */
static void lut_layer(const qp_lut_layer *layer, const uint32_t *in, uint32_t *out)
{
    const uint16_t *c = layer->connections;
    const uint32_t *tables = layer->tables;
    const uint32_t nodes = layer->nodes;
    uint32_t n, l, word = 0;

    for (n = 0; n < nodes; ++n) {
        uint32_t address = 0, entry;

        for (l = 0; l < QP_LUT_INPUTS; ++l) { /* a constant count: the compiler unrolls it */
            address |= BIT(in, c[l]) << l;
        }
        c += QP_LUT_INPUTS;
        entry = (n << QP_LUT_INPUTS) | address;
        word |= BIT(tables, entry) << (n & 31u);
        if ((n & 31u) == 31u) {
            out[n >> 5] = word;
            word = 0;
        }
    }
    if (nodes & 31u) {
        out[nodes >> 5] = word;
    }
}

void qpolicy_run(const int8_t x[QP_OBS_DIM], int8_t o[QP_ACT_DIM])
{
    uint32_t buf_a[QP_BUF_WORDS], buf_b[QP_BUF_WORDS];
    uint32_t *in = buf_a, *out = buf_b, *swap;
    uint16_t c, l;

    for (c = 0; c < QP_IN_WORDS; ++c) {
        buf_a[c] = 0;
    }
    for (c = 0; c < QP_OBS_DIM; ++c) {
        /* levels outside [0, QP_THERMOMETER_BITS] set no bits or all of them, as NumPy's x > i does */
        const int32_t v = x[c] < 0 ? 0 : x[c] > QP_THERMOMETER_BITS ? QP_THERMOMETER_BITS : x[c];
        set_bits(buf_a, (uint32_t)c * QP_THERMOMETER_BITS, (uint32_t)v);
    }
    for (l = 0; l < QP_N_LAYERS; ++l) {
        lut_layer(&qp_layers[l], in, out);
        swap = in;
        in = out;
        out = swap;
    }
    for (c = 0; c < QP_ACT_DIM; ++c) {
        o[c] = qp_head[c][count_bits(in, (uint32_t)c * QP_GROUP, QP_GROUP)];
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

void qpolicy_quantize_obs(const float obs[QP_OBS_DIM], int8_t x[QP_OBS_DIM])
{
    uint16_t c;

    for (c = 0; c < QP_OBS_DIM; ++c) {
        /* One operation per assignment: with C99's standard excess precision every step is rounded
         * to single precision, as NumPy's float32 (obs - mean) / std is (as in the MLP engine) */
        const float centred = obs[c] - qp_obs_mean[c];
        const float normalized = centred / qp_obs_std[c];
        x[c] = level(normalized);
    }
}

void qpolicy_action_float(const int16_t a_q15[QP_ACT_DIM], float action[QP_ACT_DIM])
{
    uint16_t c;

    for (c = 0; c < QP_ACT_DIM; ++c) {
        action[c] = (float)a_q15[c] / (float)QP_LUT_ONE * qp_action_scale[c] + qp_action_bias[c];
    }
}
