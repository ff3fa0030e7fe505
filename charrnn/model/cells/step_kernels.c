/* The elementwise work of the hand-written scans, fused: what their Python loops do in several
   ATen calls per time step (each costing more in overhead than in arithmetic at B=16), here one
   pass over (B, H). kernels.py compiles this file with the machine's C compiler at first use and
   calls it through ctypes; without a compiler the scans keep their Python loops.

   Layouts are PyTorch's contiguous ones. A `low` flag says a buffer holds bf16 (the products'
   precision under autocast) rather than fp32; the state and the gates are always fp32. */

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline __attribute__((always_inline)) float from_bf16(uint16_t value) {
    uint32_t bits = (uint32_t)value << 16;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* round to nearest even, as PyTorch rounds fp32 to bf16 */
static inline __attribute__((always_inline)) uint16_t to_bf16(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

/* always inlined, so that each caller's constant `low` leaves one plain loop to vectorise */
#define INLINE static inline __attribute__((always_inline))

/* element k of a row that holds bf16 (low) or fp32 */
INLINE float load(const void *row, int k, int low) {
    return low ? from_bf16(((const uint16_t *)row)[k]) : ((const float *)row)[k];
}

INLINE void store(void *row, int k, float value, int low) {
    if (low)
        ((uint16_t *)row)[k] = to_bf16(value);
    else
        ((float *)row)[k] = value;
}

/* the address of row r of a buffer of rows of `width` elements */
INLINE const void *row_of(const void *buffer, long r, int width, int low) {
    return (const char *)buffer + r * width * (low ? 2 : 4);
}

/* -ffast-math assumes no infinities (its reciprocal turns 1 / inf into NaN), so exp's argument
   stays below 80: e^80 is finite in fp32, and the results are 0 or -1 to the last bit there */
#define EXP_LIMIT 80.0f

INLINE float sigmoid(float x) { return 1.0f / (1.0f + expf(fminf(-x, EXP_LIMIT))); }

INLINE float tanh_of(float x) { return 2.0f / (1.0f + expf(fminf(-2.0f * x, EXP_LIMIT))) - 1.0f; }

/* Peephole LSTM, one step forward. pre: (B, 4H) gate pre-activations i, f, c~, o without the
   peepholes (inputs, biases and the recurrent product); peephole: (3H) p_i, p_f, p_o. Writes
   the gates after their nonlinearity (B, 4, H), c<t> and tanh(c<t>) (B, H), and h<t>. */
INLINE void peephole_forward_as(int batch, int size, int low, const void *pre,
                                const float *peephole, const float *c_prev, float *gates,
                                float *c_next, float *tanh_c, void *h) {
    const float *restrict p_i = peephole, *restrict p_f = peephole + size;
    const float *restrict p_o = peephole + 2 * size;
    for (long b = 0; b < batch; b++) {
        const void *pre_i = row_of(pre, 4 * b, size, low), *pre_f = row_of(pre, 4 * b + 1, size, low);
        const void *pre_g = row_of(pre, 4 * b + 2, size, low), *pre_o = row_of(pre, 4 * b + 3, size, low);
        const float *restrict c_in = c_prev + b * size;
        float *restrict i_out = gates + 4 * b * size, *restrict f_out = i_out + size;
        float *restrict g_out = f_out + size, *restrict o_out = g_out + size;
        float *restrict c_out = c_next + b * size, *restrict tanh_out = tanh_c + b * size;
        void *h_out = (void *)row_of(h, b, size, low);
#pragma GCC ivdep
        for (int k = 0; k < size; k++) {
            const float c = c_in[k];
            const float i = sigmoid(load(pre_i, k, low) + p_i[k] * c);
            const float f = sigmoid(load(pre_f, k, low) + p_f[k] * c);
            const float g = tanh_of(load(pre_g, k, low));
            const float o = sigmoid(load(pre_o, k, low) + p_o[k] * c);
            const float c_new = f * c + i * g, squashed = tanh_of(c_new);
            i_out[k] = i;
            f_out[k] = f;
            g_out[k] = g;
            o_out[k] = o;
            c_out[k] = c_new;
            tanh_out[k] = squashed;
            store(h_out, k, o * squashed, low);
        }
    }
}

void peephole_forward(int batch, int size, int low, const void *pre, const float *peephole,
                      const float *c_prev, float *gates, float *c_next, float *tanh_c, void *h) {
    if (low)
        peephole_forward_as(batch, size, 1, pre, peephole, c_prev, gates, c_next, tanh_c, h);
    else
        peephole_forward_as(batch, size, 0, pre, peephole, c_prev, gates, c_next, tanh_c, h);
}

/* Peephole LSTM, one step backward. dh: dLoss/dh<t> (B, H), its own output's and the later
   steps'; dc: dLoss/dc<t> in, dLoss/dc<t-1> out. Writes the gate pre-activations' gradients
   (B, 4H). */
INLINE void peephole_backward_as(int batch, int size, int low_dh, int low_out, const void *dh_in,
                                 const float *gates, const float *c_prev, const float *tanh_c,
                                 const float *peephole, float *dc, void *grad_gates) {
    const float *restrict p_i = peephole, *restrict p_f = peephole + size;
    const float *restrict p_o = peephole + 2 * size;
    for (long b = 0; b < batch; b++) {
        const void *dh_row = row_of(dh_in, b, size, low_dh);
        const float *restrict i_in = gates + 4 * b * size, *restrict f_in = i_in + size;
        const float *restrict g_in = f_in + size, *restrict o_in = g_in + size;
        const float *restrict c_in = c_prev + b * size, *restrict tanh_in = tanh_c + b * size;
        float *restrict dc_row = dc + b * size;
        void *d_i_out = (void *)row_of(grad_gates, 4 * b, size, low_out);
        void *d_f_out = (void *)row_of(grad_gates, 4 * b + 1, size, low_out);
        void *d_g_out = (void *)row_of(grad_gates, 4 * b + 2, size, low_out);
        void *d_o_out = (void *)row_of(grad_gates, 4 * b + 3, size, low_out);
#pragma GCC ivdep
        for (int k = 0; k < size; k++) {
            const float dh = load(dh_row, k, low_dh), tc = tanh_in[k];
            const float i = i_in[k], f = f_in[k], g = g_in[k], o = o_in[k], c = c_in[k];
            const float d = dc_row[k] + dh * o * (1.0f - tc * tc);
            const float d_i = d * g * i * (1.0f - i), d_f = d * c * f * (1.0f - f);
            const float d_g = d * i * (1.0f - g * g), d_o = dh * tc * o * (1.0f - o);
            store(d_i_out, k, d_i, low_out);
            store(d_f_out, k, d_f, low_out);
            store(d_g_out, k, d_g, low_out);
            store(d_o_out, k, d_o, low_out);
            dc_row[k] = d * f + d_i * p_i[k] + d_f * p_f[k] + d_o * p_o[k];
        }
    }
}

void peephole_backward(int batch, int size, int low_dh, int low_out, const void *dh_in,
                       const float *gates, const float *c_prev, const float *tanh_c,
                       const float *peephole, float *dc, void *grad_gates) {
    if (low_dh && low_out)
        peephole_backward_as(batch, size, 1, 1, dh_in, gates, c_prev, tanh_c, peephole, dc,
                             grad_gates);
    else if (low_out)
        peephole_backward_as(batch, size, 0, 1, dh_in, gates, c_prev, tanh_c, peephole, dc,
                             grad_gates);
    else
        peephole_backward_as(batch, size, 0, 0, dh_in, gates, c_prev, tanh_c, peephole, dc,
                             grad_gates);
}

/* minGRU over a whole chunk, forward: h<t> = h<t-1> + z<t> (g<t> - h<t-1>) for t = 0..T-1;
   z, g: (T, B, H); states: (T + 1, B, H) with states[0] = h0 on entry. */
void lerp_scan_forward(long steps, long width, const float *z, const float *g, float *states) {
    for (long t = 0; t < steps; t++) {
        const float *zt = z + t * width, *gt = g + t * width, *h = states + t * width;
        float *next = states + (t + 1) * width;
        for (long k = 0; k < width; k++)
            next[k] = h[k] + zt[k] * (gt[k] - h[k]);
    }
}

/* ... and backward: grad_h<t> = grad_out<t> + (1 - z<t+1>) grad_h<t+1>; carry: the gradient
   of h0 out (zeros in). */
void lerp_scan_backward(long steps, long width, const float *z, const float *grad_out,
                        float *grad_h, float *carry) {
    for (long t = steps - 1; t >= 0; t--) {
        const float *zt = z + t * width, *out = grad_out + t * width;
        float *dh = grad_h + t * width;
        for (long k = 0; k < width; k++) {
            dh[k] = out[k] + carry[k];
            carry[k] = dh[k] * (1.0f - zt[k]);
        }
    }
}
