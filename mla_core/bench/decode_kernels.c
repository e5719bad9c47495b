/* The attention of one bfloat16 decode step, for x86-64 CPUs with AVX-512 BF16. Built by
 * mla_core/bench/native_kernels.py with the system's C compiler and called through ctypes.
 * The arithmetic is the torch reference's (float32 products of the bfloat16 inputs, float32
 * softmax, weights rounded to bfloat16 before the second product where the reference rounds
 * them too); only the order of the sums differs.
 *
 * Two kernels:
 * - mha_attention_bf16: one query row per key head (MHA, naive MLA). Memory-bound: each
 *   head's keys are streamed through dot-product instructions (vdpbf16ps: 32 bfloat16
 *   products summed into 16 float32 lanes), its softmax runs on scores still in cache, and
 *   its values are summed with one float32 accumulator row per output.
 * - shared_keys_attention_bf16: many query rows over the same keys (GQA, MQA, absorbed MLA).
 *   Compute-bound on this CPU: flash-decoding, block by block, both products as register
 *   tiles of dot-product instructions with the softmax between them.
 * Why in C: torch runs these as separate passes (two BLAS products, five softmax passes,
 * casts), each writing its result to memory; see docs/decode-kernels.md for the timings.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint32_t __attribute__((may_alias)) pair_t; /* two bfloat16 numbers side by side */

/* e^x for float32 lanes, x <= 0 in softmax use (any x > -100 is fine; below, 0).
 * x = n ln2 + r with n an integer and |r| <= ln2 / 2 (ln2 in two parts, so r is exact to
 * float32), e^r by its Taylor series to r^6 (error below 2e-7 relative), times 2^n. */
static inline __m512 exp_ps(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-100.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline float exp_one(float x) {
    float lanes[16];
    _mm512_storeu_ps(lanes, exp_ps(_mm512_set1_ps(x)));
    return lanes[0];
}

/* out[i] = e^x[i]: the exponentials of a softmax alone (the shape floor's probe) */
void exp_f32(const float *x, float *out, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n / 16; i++)
        _mm512_storeu_ps(out + 16 * i, exp_ps(_mm512_loadu_ps(x + 16 * i)));
    for (int64_t i = n / 16 * 16; i < n; i++) out[i] = exp_one(x[i]);
}

/* ---- one query row per key head ------------------------------------------------------ */

/* scores[t] = sum_j keys[t, j] * query[j] for one head
 * keys: bfloat16 [tokens, width]; query: bfloat16 [width]; scores: float32 [tokens].
 * width is a multiple of 32. */
static void dot_over_last(const uint16_t *keys, const uint16_t *q, float *scores, int64_t tokens,
                          int64_t width) {
    for (int64_t t = 0; t < tokens; t++) {
        const uint16_t *k = keys + t * width;
        __m512 even = _mm512_setzero_ps(), odd = _mm512_setzero_ps();
        int64_t j = 0;
        for (; j + 64 <= width; j += 64) {
            even = _mm512_dpbf16_ps(even, (__m512bh)_mm512_loadu_si512(k + j),
                                    (__m512bh)_mm512_loadu_si512(q + j));
            odd = _mm512_dpbf16_ps(odd, (__m512bh)_mm512_loadu_si512(k + j + 32),
                                   (__m512bh)_mm512_loadu_si512(q + j + 32));
        }
        for (; j < width; j += 32) {
            even = _mm512_dpbf16_ps(even, (__m512bh)_mm512_loadu_si512(k + j),
                                    (__m512bh)_mm512_loadu_si512(q + j));
        }
        scores[t] = _mm512_reduce_add_ps(_mm512_add_ps(even, odd));
    }
}

/* the same product in float32: keys [tokens, width], width a multiple of 16 */
static void dot_over_last_f32(const float *keys, const float *q, float *scores, int64_t tokens,
                              int64_t width) {
    for (int64_t t = 0; t < tokens; t++) {
        const float *k = keys + t * width;
        __m512 even = _mm512_setzero_ps(), odd = _mm512_setzero_ps();
        int64_t j = 0;
        for (; j + 32 <= width; j += 32) {
            even = _mm512_fmadd_ps(_mm512_loadu_ps(k + j), _mm512_loadu_ps(q + j), even);
            odd = _mm512_fmadd_ps(_mm512_loadu_ps(k + j + 16), _mm512_loadu_ps(q + j + 16), odd);
        }
        for (; j < width; j += 16)
            even = _mm512_fmadd_ps(_mm512_loadu_ps(k + j), _mm512_loadu_ps(q + j), even);
        scores[t] = _mm512_reduce_add_ps(_mm512_add_ps(even, odd));
    }
}

/* 16 bfloat16 numbers widened to float32: a bfloat16 is the top half of a float32. */
static inline __m512 widen(const uint16_t *p) {
    __m512i halves = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(halves, 16));
}

/* 16 numbers from p + i as float32: float32 as they are (f32), else bfloat16 widened */
static inline __m512 load16(const void *p, int64_t i, int f32) {
    return f32 ? _mm512_loadu_ps((const float *)p + i) : widen((const uint16_t *)p + i);
}

/* out[j] = sum_b sum_c weights[b * block + c] * v_blocks[b, j, c] for one head
 * weights: float32 [n_blocks * block]; v_blocks: float32 (f32) or bfloat16 [n_blocks, width,
 * block] (the `value_blocks` layout); out: float32 [width]. block is a multiple of 16 and at
 * most 256; width at most 512. */
static void weighted_sum(const float *weights, const void *v_blocks, float *out,
                         int64_t n_blocks, int64_t width, int64_t block, int f32) {
    __m512 acc[512];
    for (int64_t j = 0; j < width; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        __m512 w[16];
        const float *wb = weights + b * block;
        for (int64_t c = 0; c < block / 16; c++) w[c] = _mm512_loadu_ps(wb + 16 * c);
        for (int64_t j = 0; j < width; j++) {
            int64_t row = (b * width + j) * block;
            __m512 sum = _mm512_mul_ps(load16(v_blocks, row, f32), w[0]);
            for (int64_t c = 1; c < block / 16; c++)
                sum = _mm512_fmadd_ps(load16(v_blocks, row + 16 * c, f32), w[c], sum);
            acc[j] = _mm512_add_ps(acc[j], sum);
        }
    }
    for (int64_t j = 0; j < width; j++) out[j] = _mm512_reduce_add_ps(acc[j]);
}

/* Softmax of one head's scores in place, scores [n] float32, padded with zeros to
 * `padded` (the value blocks' tail). */
static void softmax_in_place(float *scores, int64_t n, int64_t padded) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    int64_t t = 0;
    for (; t + 16 <= n; t += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(scores + t));
    float max = _mm512_reduce_max_ps(vmax);
    for (; t < n; t++) max = scores[t] > max ? scores[t] : max;
    __m512 vsum = _mm512_setzero_ps(), m = _mm512_set1_ps(max);
    for (t = 0; t + 16 <= n; t += 16) {
        __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(scores + t), m));
        _mm512_storeu_ps(scores + t, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    float sum = _mm512_reduce_add_ps(vsum);
    for (; t < n; t++) {
        scores[t] = exp_one(scores[t] - max);
        sum += scores[t];
    }
    __m512 inv = _mm512_set1_ps(1.0f / sum);
    for (t = 0; t + 16 <= n; t += 16)
        _mm512_storeu_ps(scores + t, _mm512_mul_ps(_mm512_loadu_ps(scores + t), inv));
    for (; t < n; t++) scores[t] /= sum;
    for (t = n; t < padded; t++) scores[t] = 0.0f;
}

/* One decode step of MHA-shaped attention (one query row per key head: MHA, naive MLA):
 * scores, softmax and weighted sum of each head in one pass, its scores kept in cache.
 * keys [heads, tokens, width]; query [heads, width] (already scaled); v_blocks [heads,
 * n_blocks, v_width, block] (`value_blocks`), all float32 (f32) or bfloat16; out float32
 * [heads, v_width]. width a multiple of 32, block a multiple of 16 up to 256, v_width up to
 * 512. */
void mha_attention(const void *keys, const void *query, const void *v_blocks, float *out,
                   int64_t heads, int64_t tokens, int64_t width, int64_t n_blocks,
                   int64_t v_width, int64_t block, int f32, int threads) {
#pragma omp parallel num_threads(threads)
    {
        float *scores = aligned_alloc(64, ((n_blocks * block * 4 + 63) / 64) * 64);
#pragma omp for schedule(static)
        for (int64_t h = 0; h < heads; h++) {
            int64_t k_at = h * tokens * width, q_at = h * width;
            int64_t v_at = h * n_blocks * v_width * block;
            if (f32)
                dot_over_last_f32((const float *)keys + k_at, (const float *)query + q_at,
                                  scores, tokens, width);
            else
                dot_over_last((const uint16_t *)keys + k_at, (const uint16_t *)query + q_at,
                              scores, tokens, width);
            softmax_in_place(scores, tokens, n_blocks * block);
            weighted_sum(scores, (const char *)v_blocks + v_at * (f32 ? 4 : 2),
                         out + h * v_width, n_blocks, v_width, block, f32);
        }
        free(scores);
    }
}

/* ---- many query rows over the same keys ----------------------------------------------- */

/* Many query rows over the same keys (GQA, MQA, absorbed MLA), flash-decoding on the CPU.
 *
 * Scores and weights are kept with one query row per float32 lane, [tokens, rows], so that
 * a key number (or pair) broadcast to all lanes meets 16 query rows in one instruction. Per
 * block of TOKEN_BLOCK tokens: the block's scores as register tiles, the online softmax in
 * place (block max, running max and sum, the rescale factor of the output so far), then
 * the output [v_width, rows] rescaled and updated as register tiles; nothing of the block
 * leaves the core's caches.
 * - float32: a score lane adds k[t, j] q[r, j] (queries stored [width, rows]), an output lane
 *   adds v[t, c] p[t, r]: one fused multiply-add each, straight from the cache's rows.
 * - bfloat16: both products are dot products of pairs (vdpbf16ps): a score lane adds
 *   k[t, 2j] q[r, 2j] + k[t, 2j+1] q[r, 2j+1] (the key pair broadcast, the queries packed
 *   once per call as [width / 2, rows, 2]), an output lane v[t, c] p[t, r] +
 *   v[t+1, c] p[t+1, r] (the value pair broadcast from the block's values packed as
 *   [tokens / 2, v_width, 2], the weights rounded to bfloat16 and packed [tokens / 2, rows, 2]).
 */

#define TOKEN_BLOCK 64
#define MAX_ROWS 256
#define MAX_SPLITS 64 /* parts of one group's context, merged at the end */

/* scores[a, r0 + 16 b + lane] for tk keys from k1 (and k2, the RoPE part), bfloat16 */
static inline __attribute__((always_inline)) void score_tile(
    int tk, int rc, const uint16_t *k1, int64_t k1_row, int64_t d1, const uint16_t *k2,
    int64_t k2_row, int64_t d2, const uint16_t *q_pairs, int64_t rows, int64_t r0,
    float *scores) {
    __m512 acc[8][4];
    for (int a = 0; a < tk; a++)
        for (int b = 0; b < rc; b++) acc[a][b] = _mm512_setzero_ps();
    for (int part = 0; part < 2; part++) {
        const uint16_t *k = part ? k2 : k1;
        int64_t k_row = part ? k2_row : k1_row, pairs = (part ? d2 : d1) / 2;
        const uint16_t *q = q_pairs + (part ? d1 / 2 : 0) * rows * 2;
        for (int64_t j = 0; j < pairs; j++) {
            __m512bh qv[4];
            for (int b = 0; b < rc; b++)
                qv[b] = (__m512bh)_mm512_loadu_si512(q + (j * rows + r0 + 16 * b) * 2);
            for (int a = 0; a < tk; a++) {
                __m512bh kb = (__m512bh)_mm512_set1_epi32(*(const pair_t *)(k + a * k_row + 2 * j));
                for (int b = 0; b < rc; b++) acc[a][b] = _mm512_dpbf16_ps(acc[a][b], kb, qv[b]);
            }
        }
    }
    for (int a = 0; a < tk; a++)
        for (int b = 0; b < rc; b++) _mm512_storeu_ps(scores + a * rows + r0 + 16 * b, acc[a][b]);
}

/* the same in float32: queries [d1 + d2, rows] */
static inline __attribute__((always_inline)) void score_tile_f32(
    int tk, int rc, const float *k1, int64_t k1_row, int64_t d1, const float *k2,
    int64_t k2_row, int64_t d2, const float *queries, int64_t rows, int64_t r0, float *scores) {
    __m512 acc[8][4];
    for (int a = 0; a < tk; a++)
        for (int b = 0; b < rc; b++) acc[a][b] = _mm512_setzero_ps();
    for (int part = 0; part < 2; part++) {
        const float *k = part ? k2 : k1;
        int64_t k_row = part ? k2_row : k1_row, width = part ? d2 : d1;
        const float *q = queries + (part ? d1 : 0) * rows;
        for (int64_t j = 0; j < width; j++) {
            __m512 qv[4];
            for (int b = 0; b < rc; b++) qv[b] = _mm512_loadu_ps(q + j * rows + r0 + 16 * b);
            for (int a = 0; a < tk; a++) {
                __m512 kb = _mm512_set1_ps(k[a * k_row + j]);
                for (int b = 0; b < rc; b++) acc[a][b] = _mm512_fmadd_ps(kb, qv[b], acc[a][b]);
            }
        }
    }
    for (int a = 0; a < tk; a++)
        for (int b = 0; b < rc; b++) _mm512_storeu_ps(scores + a * rows + r0 + 16 * b, acc[a][b]);
}

/* out_t[c, r0 + 16 b + lane] = alpha * out_t + sum over pairs of values x weights, bfloat16 */
static inline __attribute__((always_inline)) void value_tile(
    int cb, int rc, const pair_t *v_pairs, int64_t v_width, int64_t c0, const uint16_t *p_pairs,
    int64_t rows, int64_t r0, int64_t pairs, const __m512 *alpha, float *out_t) {
    __m512 acc[8][4];
    for (int c = 0; c < cb; c++)
        for (int b = 0; b < rc; b++)
            acc[c][b] = _mm512_mul_ps(_mm512_loadu_ps(out_t + (c0 + c) * rows + r0 + 16 * b),
                                      alpha[b]);
    for (int64_t p = 0; p < pairs; p++) {
        __m512bh pv[4];
        for (int b = 0; b < rc; b++)
            pv[b] = (__m512bh)_mm512_loadu_si512(p_pairs + (p * rows + r0 + 16 * b) * 2);
        for (int c = 0; c < cb; c++) {
            __m512bh vb = (__m512bh)_mm512_set1_epi32(v_pairs[p * v_width + c0 + c]);
            for (int b = 0; b < rc; b++) acc[c][b] = _mm512_dpbf16_ps(acc[c][b], vb, pv[b]);
        }
    }
    for (int c = 0; c < cb; c++)
        for (int b = 0; b < rc; b++)
            _mm512_storeu_ps(out_t + (c0 + c) * rows + r0 + 16 * b, acc[c][b]);
}

/* the same in float32: values [n, v_width] (rows v_row apart), weights [n, rows] */
static inline __attribute__((always_inline)) void value_tile_f32(
    int cb, int rc, const float *values, int64_t v_row, int64_t c0, const float *weights,
    int64_t rows, int64_t r0, int64_t n, const __m512 *alpha, float *out_t) {
    __m512 acc[8][4];
    for (int c = 0; c < cb; c++)
        for (int b = 0; b < rc; b++)
            acc[c][b] = _mm512_mul_ps(_mm512_loadu_ps(out_t + (c0 + c) * rows + r0 + 16 * b),
                                      alpha[b]);
    for (int64_t t = 0; t < n; t++) {
        __m512 pv[4];
        for (int b = 0; b < rc; b++) pv[b] = _mm512_loadu_ps(weights + t * rows + r0 + 16 * b);
        for (int c = 0; c < cb; c++) {
            __m512 vb = _mm512_set1_ps(values[t * v_row + c0 + c]);
            for (int b = 0; b < rc; b++) acc[c][b] = _mm512_fmadd_ps(vb, pv[b], acc[c][b]);
        }
    }
    for (int c = 0; c < cb; c++)
        for (int b = 0; b < rc; b++)
            _mm512_storeu_ps(out_t + (c0 + c) * rows + r0 + 16 * b, acc[c][b]);
}

/* The tiles for 4, 2 and 1 chunks of 16 query rows: tk keys x rc chunks of scores and cb value
 * columns x rc chunks of output, at most 16 float32 accumulators (AVX-512 has 32 registers).
 * cb must divide every v_width (a multiple of 32). */
#define TILES(tk, rc, cb)                                                                      \
    static void scores_##rc(const void *k1, int64_t k1_row, int64_t d1, const void *k2,        \
                            int64_t k2_row, int64_t d2, const void *queries, int64_t rows,     \
                            int64_t n, float *scores, int f32) {                               \
        for (int64_t r0 = 0; r0 < rows; r0 += 16 * rc) {                                        \
            int64_t t = 0;                                                                      \
            if (f32) {                                                                          \
                const float *a1 = k1, *a2 = k2;                                                 \
                for (; t + tk <= n; t += tk)                                                    \
                    score_tile_f32(tk, rc, a1 + t * k1_row, k1_row, d1, a2 + t * k2_row,        \
                                   k2_row, d2, queries, rows, r0, scores + t * rows);           \
                for (; t < n; t++)                                                              \
                    score_tile_f32(1, rc, a1 + t * k1_row, k1_row, d1, a2 + t * k2_row, k2_row, \
                                   d2, queries, rows, r0, scores + t * rows);                   \
            } else {                                                                            \
                const uint16_t *a1 = k1, *a2 = k2;                                              \
                for (; t + tk <= n; t += tk)                                                    \
                    score_tile(tk, rc, a1 + t * k1_row, k1_row, d1, a2 + t * k2_row, k2_row,    \
                               d2, queries, rows, r0, scores + t * rows);                       \
                for (; t < n; t++)                                                              \
                    score_tile(1, rc, a1 + t * k1_row, k1_row, d1, a2 + t * k2_row, k2_row, d2, \
                               queries, rows, r0, scores + t * rows);                           \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    static void values_##rc(const pair_t *v_pairs, int64_t v_width, const uint16_t *p_pairs,    \
                            int64_t rows, int64_t pairs, const __m512 *alpha, float *out_t) {   \
        for (int64_t r0 = 0; r0 < rows; r0 += 16 * rc)                                          \
            for (int64_t c0 = 0; c0 < v_width; c0 += cb)                                        \
                value_tile(cb, rc, v_pairs, v_width, c0, p_pairs, rows, r0, pairs,              \
                           alpha + r0 / 16, out_t);                                             \
    }                                                                                           \
    static void values_f32_##rc(const float *values, int64_t v_row, int64_t v_width,           \
                                const float *weights, int64_t rows, int64_t n,                  \
                                const __m512 *alpha, float *out_t) {                            \
        for (int64_t r0 = 0; r0 < rows; r0 += 16 * rc)                                          \
            for (int64_t c0 = 0; c0 < v_width; c0 += cb)                                        \
                value_tile_f32(cb, rc, values, v_row, c0, weights, rows, r0, n,                 \
                               alpha + r0 / 16, out_t);                                         \
    }

TILES(4, 4, 4)
TILES(8, 2, 8)
TILES(8, 1, 8)

/* values [n, v_width] (rows `v_row` apart) as pairs of tokens [ceil(n / 2), v_width, 2] */
static void pack_value_pairs(const uint16_t *values, int64_t v_row, int64_t v_width, int64_t n,
                             uint16_t *v_pairs) {
    __m512i low = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                   39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    __m512i high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
    for (int64_t t = 0; t < n; t += 2) {
        const uint16_t *v0 = values + t * v_row, *v1 = v0 + v_row;
        uint16_t *dst = v_pairs + t * v_width;
        for (int64_t c = 0; c < v_width; c += 32) {
            __m512i a = _mm512_loadu_si512(v0 + c);
            __m512i b = t + 1 < n ? _mm512_loadu_si512(v1 + c) : _mm512_setzero_si512();
            _mm512_storeu_si512(dst + 2 * c, _mm512_permutex2var_epi16(a, low, b));
            _mm512_storeu_si512(dst + 2 * c + 32, _mm512_permutex2var_epi16(a, high, b));
        }
    }
}

/* weights [n, rows] float32 as bfloat16 pairs of tokens [ceil(n / 2), rows, 2] */
static void pack_weight_pairs(const float *weights, int64_t rows, int64_t n, uint16_t *p_pairs) {
    __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                          24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                          16, 0);
    for (int64_t t = 0; t < n; t += 2)
        for (int64_t r = 0; r < rows; r += 16) {
            __m512 p0 = _mm512_loadu_ps(weights + t * rows + r), p1 = _mm512_setzero_ps();
            if (t + 1 < n) p1 = _mm512_loadu_ps(weights + (t + 1) * rows + r);
            __m512i both = (__m512i)_mm512_cvtne2ps_pbh(p1, p0); /* p0 low, p1 high */
            _mm512_storeu_si512(p_pairs + (t / 2 * rows + r) * 2,
                                _mm512_permutexvar_epi16(interleave, both));
        }
}

/* The online softmax of one block, scores [n, rows] turned into weights in place: per chunk
 * of 16 rows, the new running max, alpha = e^(old max - new max) (the factor on everything
 * summed so far) and the running sum. softmax 0: the scores stay as they are (alpha 1). */
static void block_weights(float *scores, int64_t rows, int64_t n, __m512 *running_max,
                          __m512 *running_sum, __m512 *alpha, int softmax) {
    for (int64_t b = 0; b < rows / 16; b++) {
        __m512 new_max = _mm512_setzero_ps(), sum = _mm512_setzero_ps();
        alpha[b] = _mm512_set1_ps(1.0f);
        if (softmax) {
            __m512 block_max = _mm512_set1_ps(-INFINITY);
            for (int64_t t = 0; t < n; t++)
                block_max = _mm512_max_ps(block_max, _mm512_loadu_ps(scores + t * rows + 16 * b));
            new_max = _mm512_max_ps(running_max[b], block_max);
            alpha[b] = exp_ps(_mm512_sub_ps(running_max[b], new_max));
        }
        for (int64_t t = 0; t < n; t++) {
            float *s = scores + t * rows + 16 * b;
            __m512 p = _mm512_loadu_ps(s);
            if (softmax) {
                p = exp_ps(_mm512_sub_ps(p, new_max));
                _mm512_storeu_ps(s, p);
            }
            sum = _mm512_add_ps(sum, p);
        }
        running_max[b] = new_max;
        running_sum[b] = _mm512_fmadd_ps(running_sum[b], alpha[b], sum);
    }
}

/* One part of the context [t0, t1) of one group: partial output out_t [v_width, rows]
 * (unnormalised), row max and row sum. Inputs float32 (f32) or bfloat16, element strides. */
static void attend_part(const void *k1, int64_t k1_row, int64_t d1, const void *k2,
                        int64_t k2_row, int64_t d2, const void *values, int64_t v_row,
                        int64_t v_width, const void *queries, int64_t rows, int64_t t0,
                        int64_t t1, float *out_t, float *row_max, float *row_sum,
                        float *scores, uint16_t *p_pairs, uint16_t *v_pairs, int f32,
                        int softmax) {
    int64_t chunks = rows / 16, size = f32 ? 4 : 2;
    __m512 running_max[MAX_ROWS / 16], running_sum[MAX_ROWS / 16], alpha[MAX_ROWS / 16];
    for (int64_t b = 0; b < chunks; b++) {
        running_max[b] = _mm512_set1_ps(-INFINITY);
        running_sum[b] = _mm512_setzero_ps();
    }
    memset(out_t, 0, v_width * rows * sizeof(float));
    for (int64_t start = t0; start < t1; start += TOKEN_BLOCK) {
        int64_t n = t1 - start < TOKEN_BLOCK ? t1 - start : TOKEN_BLOCK, pairs = (n + 1) / 2;
        const char *b1 = (const char *)k1 + start * k1_row * size;
        const char *b2 = k2 ? (const char *)k2 + start * k2_row * size : b1;
        const char *bv = (const char *)values + start * v_row * size;
        int64_t width2 = k2 ? d2 : 0;
        if (chunks % 4 == 0)
            scores_4(b1, k1_row, d1, b2, k2_row, width2, queries, rows, n, scores, f32);
        else if (chunks % 2 == 0)
            scores_2(b1, k1_row, d1, b2, k2_row, width2, queries, rows, n, scores, f32);
        else
            scores_1(b1, k1_row, d1, b2, k2_row, width2, queries, rows, n, scores, f32);
        block_weights(scores, rows, n, running_max, running_sum, alpha, softmax);
        if (f32) {
            const float *v = (const float *)bv;
            if (chunks % 4 == 0)
                values_f32_4(v, v_row, v_width, scores, rows, n, alpha, out_t);
            else if (chunks % 2 == 0)
                values_f32_2(v, v_row, v_width, scores, rows, n, alpha, out_t);
            else
                values_f32_1(v, v_row, v_width, scores, rows, n, alpha, out_t);
            continue;
        }
        pack_weight_pairs(scores, rows, n, p_pairs);
        pack_value_pairs((const uint16_t *)bv, v_row, v_width, n, v_pairs);
        const pair_t *vp = (const pair_t *)v_pairs;
        if (chunks % 4 == 0)
            values_4(vp, v_width, p_pairs, rows, pairs, alpha, out_t);
        else if (chunks % 2 == 0)
            values_2(vp, v_width, p_pairs, rows, pairs, alpha, out_t);
        else
            values_1(vp, v_width, p_pairs, rows, pairs, alpha, out_t);
    }
    for (int64_t b = 0; b < chunks; b++) {
        _mm512_storeu_ps(row_max + 16 * b, running_max[b]);
        _mm512_storeu_ps(row_sum + 16 * b, running_sum[b]);
    }
}

/* out[g, r, c] = softmax_t(scores[g, r, t]) . values[g, t, c] for every group g (a batch row
 * and key/value head), with scores[g, r, t] = k1[g, t] . q[g, r, :d1] + k2[g, t] . q[g, r, d1:].
 * k1 [groups, tokens, d1] (rows k1_row apart, groups k1_group apart), k2 [groups, tokens, d2]
 * or NULL; values likewise (may be k1 itself: absorbed MLA); all float32 (f32) or bfloat16,
 * strides in elements. queries (already scaled): float32 [groups, d1 + d2, rows], or
 * bfloat16 pairs [groups, (d1 + d2) / 2, rows, 2]. out float32 [groups, rows, v_width].
 * rows a multiple of 16 up to MAX_ROWS, d1 and d2 even, v_width a multiple of 32. Each
 * group's context is split in `splits` parts (at most MAX_SPLITS), attended in parallel
 * and merged at the end; scratch float32 [groups * splits, v_width * rows + 2 * rows].
 * softmax 0: the two products alone, the scores taken as the weights (a timing probe). */
void shared_keys_attention(const void *k1, int64_t k1_group, int64_t k1_row, int64_t d1,
                           const void *k2, int64_t k2_group, int64_t k2_row, int64_t d2,
                           const void *values, int64_t v_group, int64_t v_row, int64_t v_width,
                           const void *queries, int64_t rows, int64_t groups, int64_t tokens,
                           int64_t splits, float *scratch, float *out, int f32, int softmax,
                           int threads) {
    int64_t part_size = v_width * rows + 2 * rows, size = f32 ? 4 : 2;
    int64_t per_split = (tokens + splits - 1) / splits;
#pragma omp parallel num_threads(threads)
    {
        float *scores = aligned_alloc(64, TOKEN_BLOCK * MAX_ROWS * sizeof(float));
        uint16_t *p_pairs = aligned_alloc(64, TOKEN_BLOCK * MAX_ROWS * sizeof(uint16_t));
        uint16_t *v_pairs = aligned_alloc(64, ((TOKEN_BLOCK * v_width * 2 + 63) / 64) * 64);
#pragma omp for schedule(static)
        for (int64_t item = 0; item < groups * splits; item++) {
            int64_t g = item / splits, s = item % splits;
            int64_t t0 = s * per_split, t1 = t0 + per_split < tokens ? t0 + per_split : tokens;
            float *part = scratch + item * part_size;
            if (t0 >= t1) { /* an empty part: weight zero in the merge */
                for (int64_t r = 0; r < rows; r++) {
                    part[v_width * rows + r] = -INFINITY;
                    part[v_width * rows + rows + r] = 0.0f;
                }
                continue;
            }
            attend_part((const char *)k1 + g * k1_group * size, k1_row, d1,
                        k2 ? (const char *)k2 + g * k2_group * size : NULL, k2_row, d2,
                        (const char *)values + g * v_group * size, v_row, v_width,
                        (const char *)queries + g * (d1 + d2) * rows * size, rows, t0, t1, part,
                        part + v_width * rows, part + v_width * rows + rows, scores, p_pairs,
                        v_pairs, f32, softmax);
        }
        free(scores);
        free(p_pairs);
        free(v_pairs);
#pragma omp for schedule(static)
        for (int64_t g = 0; g < groups; g++) {
            float weight[MAX_SPLITS][MAX_ROWS], total[MAX_ROWS];
            for (int64_t r = 0; r < rows; r++) {
                float max = -INFINITY;
                for (int64_t s = 0; s < splits; s++) {
                    float m = scratch[(g * splits + s) * part_size + v_width * rows + r];
                    max = m > max ? m : max;
                }
                total[r] = 0.0f;
                for (int64_t s = 0; s < splits; s++) {
                    float *part = scratch + (g * splits + s) * part_size + v_width * rows;
                    weight[s][r] = part[r] == -INFINITY ? 0.0f : expf(part[r] - max);
                    total[r] += weight[s][r] * part[rows + r];
                }
            }
            for (int64_t r = 0; r < rows; r++) {
                float *o = out + (g * rows + r) * v_width;
                for (int64_t c = 0; c < v_width; c++) {
                    float acc = 0.0f;
                    for (int64_t s = 0; s < splits; s++)
                        acc += weight[s][r] * scratch[(g * splits + s) * part_size + c * rows + r];
                    o[c] = acc / total[r];
                }
            }
        }
    }
}
