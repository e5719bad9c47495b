/* The two streaming products of a bfloat16 decode step (MHA, naive MLA), for x86-64 CPUs with
 * AVX-512 BF16. Built by mla_core/bench/native_kernels.py with the system's C compiler and
 * called through ctypes; the numbers are the same as the torch reference's (float32
 * arithmetic on the bfloat16 inputs), only the order of the sums differs.
 *
 * Why in C: in bfloat16 the compiled torch loops widen each number and reduce along the
 * 128-wide head row by row, and reach about 60% of the bandwidth at which the same bytes can
 * be read. Here a row of keys is two dot-product instructions (vdpbf16ps: 32 bfloat16
 * products, exact in float32, summed into float32 lanes), and the weighted sum keeps one
 * float32 accumulator row per output, reduced once at the end.
 */
#include <immintrin.h>
#include <stdint.h>

/* scores[r] = sum_j keys[r, j] * query[r / tokens, j]
 * keys: bfloat16 [rows, width] (rows = heads x tokens, contiguous); query: bfloat16
 * [rows / tokens, width]; scores: float32 [rows]. width is a multiple of 32. */
void dot_over_last_bf16(const uint16_t *keys, const uint16_t *query, float *scores,
                        int64_t rows, int64_t tokens, int64_t width, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t head = 0; head < rows / tokens; head++) {
        const uint16_t *q = query + head * width;
        for (int64_t t = 0; t < tokens; t++) {
            const uint16_t *k = keys + (head * tokens + t) * width;
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
            scores[head * tokens + t] = _mm512_reduce_add_ps(_mm512_add_ps(even, odd));
        }
    }
}

/* 16 bfloat16 numbers widened to float32: a bfloat16 is the top half of a float32. */
static inline __m512 widen(const uint16_t *p) {
    __m512i halves = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(halves, 16));
}

/* out[h, j] = sum_b sum_c weights[h, b * block + c] * v_blocks[h, b, j, c]
 * weights: float32 [heads, n_blocks * block]; v_blocks: bfloat16 [heads, n_blocks, width,
 * block] (the `value_blocks` layout); out: float32 [heads, width]. block is a multiple of 16
 * and at most 256; width at most 512. */
void weighted_sum_bf16(const float *weights, const uint16_t *v_blocks, float *out,
                       int64_t heads, int64_t n_blocks, int64_t width, int64_t block,
                       int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t h = 0; h < heads; h++) {
        __m512 acc[512];
        for (int64_t j = 0; j < width; j++) acc[j] = _mm512_setzero_ps();
        for (int64_t b = 0; b < n_blocks; b++) {
            __m512 w[16];
            const float *wb = weights + (h * n_blocks + b) * block;
            for (int64_t c = 0; c < block / 16; c++) w[c] = _mm512_loadu_ps(wb + 16 * c);
            const uint16_t *vb = v_blocks + (h * n_blocks + b) * width * block;
            for (int64_t j = 0; j < width; j++) {
                const uint16_t *row = vb + j * block;
                __m512 sum = _mm512_mul_ps(widen(row), w[0]);
                for (int64_t c = 1; c < block / 16; c++)
                    sum = _mm512_fmadd_ps(widen(row + 16 * c), w[c], sum);
                acc[j] = _mm512_add_ps(acc[j], sum);
            }
        }
        for (int64_t j = 0; j < width; j++) out[h * width + j] = _mm512_reduce_add_ps(acc[j]);
    }
}
