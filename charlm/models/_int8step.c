/* One time step of stacked int8 RNN / GRU / LSTM layers for a batch of rows, in one call.
 *
 * Why C: at batch 1 a step of a character model is a few matrix-vector products and a few
 * thousand gate values. PyTorch's int8 kernels cost about 45 us a call before any arithmetic,
 * and a step written in Python pays a few us per operator, so int8's quarter of the bytes
 * hardly showed in tokens/s (docs/benchmarks.md). Here the whole stack steps in one call:
 * for each layer, quantize x and h, the products, the gates; the interpreter's lock is
 * released meanwhile, and nothing is shared between calls but the read-only weights.
 *
 * The layout, made by charlm/models/int8_step.py:
 *   weights (gates * hidden, x_cols + h_cols) uint8: [W_ih | 0 | W_hh | 0] + 128, each part
 *       padded with zero columns to a multiple of COLUMN_BLOCK, with one symmetric scale per
 *       row and part (x_scales, h_scales): W_ih[o, i] ~ (weights[o, i] - 128) * x_scales[o].
 *   x (rows, input_size) and h (rows, hidden), float32, are quantized here on one symmetric
 *   scale per row each, max |v| / ACTIVATION_MAX.
 * Then from_x[o] = x_scales[o] * sx * sum_i (weights[o, i] - 128) * xq[i], from_h likewise,
 * and the cell's equations follow PyTorch's (gate order i, f, g, o and r, z, n).
 *
 * Why the offset and 7-bit activations: AVX2's maddubs multiplies unsigned bytes by signed
 * ones and sums each pair into 16 bits. Stored as unsigned bytes, the weights go straight
 * into it, and sum_i (w_i + 128) v_i less 128 * sum_i v_i is the product wanted: one
 * instruction fewer per 32 weights than carrying v's signs into the weights. A pair's sum,
 * up to 2 * 255 * |v|, fits 16 bits only if |v| <= 64, so x and h take 7 bits (|v| <= 63:
 * 32,130 at most), as in PyTorch's own dynamic quantization on x86 (FBGEMM's reduce_range),
 * for the same reason. The AVX2 path is chosen at run time; another CPU runs the portable
 * loop, which gives the same sums.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define COLUMN_BLOCK 32
#define ROW_BLOCK 8
#define ACTIVATION_MAX 63
#define WEIGHT_OFFSET 128

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>
#endif

/* The gates' code is written once and compiled into each kernel's function: inlined there,
 * it is vectorized for that function's instruction set. */
#if defined(__GNUC__)
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE static inline
#endif

enum { CELL_RNN_TANH = 0, CELL_RNN_RELU = 1, CELL_GRU = 2, CELL_LSTM = 3 };

/* The dot products of ROW_BLOCK weight rows, `stride` bytes apart, with a row's quantized
 * x (x_cols values) and h (h_cols): the rows' first x_cols columns with x into sums[0..], the
 * next h_cols with h into sums[ROW_BLOCK..]. The weights as stored, offset included. */
typedef void (*BlockDots)(const uint8_t *, Py_ssize_t, const int8_t *, Py_ssize_t,
                          const int8_t *, Py_ssize_t, int32_t *);

static int32_t dot(const uint8_t *row, const int8_t *v, Py_ssize_t n) {
    int32_t sum = 0;
    for (Py_ssize_t i = 0; i < n; i++) sum += (int32_t)row[i] * (int32_t)v[i];
    return sum;
}

/* The same for `count` rows (the last block may hold fewer than ROW_BLOCK). */
static void rows_dots(const uint8_t *w, Py_ssize_t stride, Py_ssize_t count, const int8_t *xq,
                      Py_ssize_t x_cols, const int8_t *hq, Py_ssize_t h_cols, int32_t *sums) {
    for (Py_ssize_t r = 0; r < count; r++) {
        sums[r] = dot(w + r * stride, xq, x_cols);
        sums[ROW_BLOCK + r] = dot(w + r * stride + x_cols, hq, h_cols);
    }
}

static void block_dots_portable(const uint8_t *w, Py_ssize_t stride, const int8_t *xq,
                                Py_ssize_t x_cols, const int8_t *hq, Py_ssize_t h_cols,
                                int32_t *sums) {
    rows_dots(w, stride, ROW_BLOCK, xq, x_cols, hq, h_cols, sums);
}

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2"))) static inline int32_t sum_lanes(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Each 32 values of v are loaded once for the block's rows; maddubs takes the rows' unsigned
 * bytes as they are stored. */
__attribute__((target("avx2"), always_inline)) static inline void block_part_avx2(
    const uint8_t *w, Py_ssize_t stride, const int8_t *v, Py_ssize_t n, int32_t *sums) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[ROW_BLOCK];
    for (int r = 0; r < ROW_BLOCK; r++) acc[r] = _mm256_setzero_si256();
    for (Py_ssize_t i = 0; i < n; i += COLUMN_BLOCK) {
        __m256i values = _mm256_loadu_si256((const __m256i *)(v + i));
        for (int r = 0; r < ROW_BLOCK; r++) {
            __m256i row = _mm256_loadu_si256((const __m256i *)(w + r * stride + i));
            __m256i pairs = _mm256_maddubs_epi16(row, values);
            acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(pairs, ones));
        }
    }
    for (int r = 0; r < ROW_BLOCK; r++) sums[r] = sum_lanes(acc[r]);
}

__attribute__((target("avx2"), always_inline)) static inline void block_dots_avx2(
    const uint8_t *w, Py_ssize_t stride, const int8_t *xq, Py_ssize_t x_cols, const int8_t *hq,
    Py_ssize_t h_cols, int32_t *sums) {
    block_part_avx2(w, stride, xq, x_cols, sums);
    block_part_avx2(w + x_cols, stride, hq, h_cols, sums + ROW_BLOCK);
}
#endif

/* Round to the nearest integer, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves no
 * bits below the units. Plain arithmetic, so that the loops using it vectorize (nearbyintf
 * is a library call where the CPU baseline lacks a rounding instruction). */
ALWAYS_INLINE float round_even(float v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic;
}

/* Rows of x or h quantized: values (rows, cols), each row on its own scale, and what the
 * weights' offset adds to each row's products, WEIGHT_OFFSET * the sum of its values. */
typedef struct {
    int8_t *values;
    float *scales;
    int32_t *offsets;
    Py_ssize_t cols;
} Quantized;

/* v (n values) as int8 into row b of q, the padding zero: q->values[i] = round(v[i] / scale),
 * scale = max |v| / ACTIVATION_MAX (0 for a zero v). */
static void quantize_row(const float *v, Py_ssize_t n, Quantized *q, Py_ssize_t b) {
    int8_t *out = q->values + b * q->cols;
    float largest = 0.0f;
    for (Py_ssize_t i = 0; i < n; i++) {
        float magnitude = fabsf(v[i]);
        largest = magnitude > largest ? magnitude : largest;
    }
    float scale = largest / (float)ACTIVATION_MAX, inverse = scale > 0 ? 1.0f / scale : 0.0f;
    int32_t sum = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = (int8_t)round_even(v[i] * inverse);
        sum += out[i];
    }
    memset(out + n, 0, (size_t)(q->cols - n));
    q->scales[b] = scale;
    q->offsets[b] = WEIGHT_OFFSET * sum;
}

typedef struct {
    const uint8_t *weights;
    const float *x_scales, *h_scales, *bias_ih, *bias_hh;
    const float *x, *h, *c;
    float *h_out, *c_out;
    Py_ssize_t rows, input_size, hidden, x_cols, h_cols;
    int cell;
} Step;

static Py_ssize_t outputs_of(const Step *s) {
    int gates = s->cell == CELL_LSTM ? 4 : s->cell == CELL_GRU ? 3 : 1;
    return gates * s->hidden;
}

/* Both products of every row: from_x[b, o] = x_scales[o] * sx[b] * (W_ih · x_b), from_h
 * likewise. Rows of W are taken ROW_BLOCK at a time, each block against every batch row
 * while it is in the cache. */
ALWAYS_INLINE void products(const Step *s, BlockDots dots, const Quantized *xq,
                            const Quantized *hq, float *from_x, float *from_h) {
    Py_ssize_t outputs = outputs_of(s), stride = s->x_cols + s->h_cols;
    int32_t sums[2 * ROW_BLOCK];
    for (Py_ssize_t o = 0; o < outputs; o += ROW_BLOCK) {
        const uint8_t *block = s->weights + o * stride;
        Py_ssize_t count = outputs - o < ROW_BLOCK ? outputs - o : ROW_BLOCK;
        for (Py_ssize_t b = 0; b < s->rows; b++) {
            const int8_t *x = xq->values + b * s->x_cols, *h = hq->values + b * s->h_cols;
            if (count == ROW_BLOCK) {
                dots(block, stride, x, s->x_cols, h, s->h_cols, sums);
            } else {
                rows_dots(block, stride, count, x, s->x_cols, h, s->h_cols, sums);
            }
            float sx = xq->scales[b], sh = hq->scales[b];
            for (Py_ssize_t r = 0; r < count; r++) {
                from_x[b * outputs + o + r] =
                    (float)(sums[r] - xq->offsets[b]) * s->x_scales[o + r] * sx;
                from_h[b * outputs + o + r] =
                    (float)(sums[ROW_BLOCK + r] - hq->offsets[b]) * s->h_scales[o + r] * sh;
            }
        }
    }
}

/* e^x in float arithmetic alone, so that the compiler vectorizes the gates' loops (a call to
 * expf or tanhf cost about 20 ns each: half of a 2 x 512 LSTM's step). x = k ln 2 + r with
 * |r| <= ln 2 / 2; e^r by its Taylor series to r^6 (relative error under 2e-7); 2^k put
 * into the float's exponent bits. */
ALWAYS_INLINE float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x; /* 2^k stays a normal float */
    float k = round_even(x * 1.44269504088896341f);
    float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

ALWAYS_INLINE float sigmoid(float v) { return 1.0f / (1.0f + exp_approx(-v)); }
ALWAYS_INLINE float tanh_approx(float v) { return 1.0f - 2.0f / (exp_approx(2.0f * v) + 1.0f); }

ALWAYS_INLINE void sigmoid_all(float *v, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) v[i] = sigmoid(v[i]);
}

ALWAYS_INLINE void tanh_all(float *v, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) v[i] = tanh_approx(v[i]);
}

/* The cell's equations for row b, from its two products (each `outputs` values; from_x is
 * overwritten). Written as short loops over whole gates, which the compiler vectorizes. */
ALWAYS_INLINE void cell_equations(const Step *s, Py_ssize_t b, float *from_x,
                                  const float *from_h) {
    Py_ssize_t H = s->hidden, outputs = outputs_of(s);
    const float *bi = s->bias_ih, *bh = s->bias_hh, *h = s->h + b * H;
    float *h_out = s->h_out + b * H, *gate = from_x;
    if (s->cell == CELL_GRU) { /* the candidate's h part is multiplied by the reset gate */
        for (Py_ssize_t o = 0; o < outputs; o++) gate[o] += bi[o];
        for (Py_ssize_t o = 0; o < 2 * H; o++) gate[o] += from_h[o] + bh[o];
        sigmoid_all(gate, 2 * H); /* reset, update */
        float *candidate = gate + 2 * H;
        for (Py_ssize_t j = 0; j < H; j++)
            candidate[j] += gate[j] * (from_h[2 * H + j] + bh[2 * H + j]);
        tanh_all(candidate, H);
        for (Py_ssize_t j = 0; j < H; j++)
            h_out[j] = (1.0f - gate[H + j]) * candidate[j] + gate[H + j] * h[j];
        return;
    }
    for (Py_ssize_t o = 0; o < outputs; o++) gate[o] += from_h[o] + bi[o] + bh[o];
    if (s->cell == CELL_LSTM) { /* gates i, f, g, o */
        const float *c = s->c + b * H;
        float *c_out = s->c_out + b * H, *cell = gate + 2 * H, *out = gate + 3 * H;
        sigmoid_all(gate, 2 * H);
        tanh_all(cell, H);
        sigmoid_all(out, H);
        for (Py_ssize_t j = 0; j < H; j++) c_out[j] = gate[H + j] * c[j] + gate[j] * cell[j];
        for (Py_ssize_t j = 0; j < H; j++) h_out[j] = c_out[j];
        tanh_all(h_out, H);
        for (Py_ssize_t j = 0; j < H; j++) h_out[j] *= out[j];
    } else if (s->cell == CELL_RNN_RELU) {
        for (Py_ssize_t j = 0; j < H; j++) h_out[j] = gate[j] > 0.0f ? gate[j] : 0.0f;
    } else {
        for (Py_ssize_t j = 0; j < H; j++) h_out[j] = gate[j];
        tanh_all(h_out, H);
    }
}

/* The products and the equations of every row, compiled once for each kernel: inlined, the
 * block products and the gates' loops take that kernel's instructions. */
ALWAYS_INLINE void compute(const Step *s, BlockDots dots, const Quantized *xq,
                           const Quantized *hq, float *from_x, float *from_h) {
    Py_ssize_t outputs = outputs_of(s);
    products(s, dots, xq, hq, from_x, from_h);
    for (Py_ssize_t b = 0; b < s->rows; b++)
        cell_equations(s, b, from_x + b * outputs, from_h + b * outputs);
}

typedef void (*Compute)(const Step *, const Quantized *, const Quantized *, float *, float *);

static void compute_portable(const Step *s, const Quantized *xq, const Quantized *hq,
                             float *from_x, float *from_h) {
    compute(s, block_dots_portable, xq, hq, from_x, from_h);
}

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2,fma"))) static void compute_avx2(const Step *s, const Quantized *xq,
                                                             const Quantized *hq, float *from_x,
                                                             float *from_h) {
    compute(s, block_dots_avx2, xq, hq, from_x, from_h);
}
#endif

static int has_avx2(void) {
#ifdef HAVE_AVX2_PATH
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* The output layer, float32: out[v] = bias[v] + W[v] . h for one row h (hidden values) and
 * each of the vocab rows of W. */
typedef void (*Head)(const float *, const float *, const float *, Py_ssize_t, Py_ssize_t,
                     float *);

static void head_portable(const float *w, const float *bias, const float *h, Py_ssize_t hidden,
                          Py_ssize_t vocab, float *out) {
    for (Py_ssize_t v = 0; v < vocab; v++) {
        float sum = 0.0f;
        for (Py_ssize_t j = 0; j < hidden; j++) sum += w[v * hidden + j] * h[j];
        out[v] = bias[v] + sum;
    }
}

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2,fma"))) static void head_avx2(const float *w, const float *bias,
                                                          const float *h, Py_ssize_t hidden,
                                                          Py_ssize_t vocab, float *out) {
    Py_ssize_t whole = hidden - hidden % 8;
    for (Py_ssize_t v = 0; v < vocab; v++) {
        const float *row = w + v * hidden;
        __m256 acc = _mm256_setzero_ps();
        for (Py_ssize_t j = 0; j < whole; j += 8)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(row + j), _mm256_loadu_ps(h + j), acc);
        __m128 half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        half = _mm_add_ps(half, _mm_movehl_ps(half, half));
        float sum = _mm_cvtss_f32(_mm_add_ss(half, _mm_movehdup_ps(half)));
        for (Py_ssize_t j = whole; j < hidden; j++) sum += row[j] * h[j];
        out[v] = bias[v] + sum;
    }
}
#endif

/* The whole step with `kernel`; 0 on success, -1 when memory ran out. One allocation: both
 * products per row, the scales and offsets of x and h per row, then x and h quantized. */
static int run_step(const Step *s, Compute kernel) {
    Py_ssize_t outputs = outputs_of(s), rows = s->rows;
    size_t words = (size_t)(2 * rows * outputs + 4 * rows); /* 4-byte floats and int32s */
    float *scratch = malloc(4 * words + (size_t)(rows * (s->x_cols + s->h_cols)));
    if (scratch == NULL) return -1;
    float *from_x = scratch, *from_h = from_x + rows * outputs, *scales = from_h + rows * outputs;
    int32_t *offsets = (int32_t *)(scales + 2 * rows);
    int8_t *values = (int8_t *)(scratch + words);
    Quantized xq = {values, scales, offsets, s->x_cols};
    Quantized hq = {values + rows * s->x_cols, scales + rows, offsets + rows, s->h_cols};
    for (Py_ssize_t b = 0; b < rows; b++) {
        quantize_row(s->x + b * s->input_size, s->input_size, &xq, b);
        quantize_row(s->h + b * s->hidden, s->hidden, &hq, b);
    }
    kernel(s, &xq, &hq, from_x, from_h);
    free(scratch);
    return 0;
}

/* The products and gates this CPU runs: AVX2 where it has it, unless `portable`. */
static Compute chosen_kernel(int portable) {
#ifdef HAVE_AVX2_PATH
    if (!portable && has_avx2()) return compute_avx2;
#endif
    (void)portable;
    return compute_portable;
}

/* A stack of layers as laid out by int8_step.py: what a step needs besides the tensors that
 * change each token. Held in a capsule; the Python object that made it keeps the weights. */
typedef struct {
    const uint8_t *weights;
    const float *x_scales, *h_scales, *bias_ih, *bias_hh;
    Py_ssize_t input_size, x_cols;
} LayerWeights;

typedef struct {
    int cell;
    Compute kernel; /* chosen once, when the stack is made */
    Py_ssize_t hidden, h_cols, count;
    LayerWeights layers[];
} Stack;

static const char *STACK = "charlm._int8step.Stack";

static Py_ssize_t padded(Py_ssize_t width) {
    return (width + COLUMN_BLOCK - 1) / COLUMN_BLOCK * COLUMN_BLOCK;
}

static void free_stack(PyObject *capsule) { PyMem_Free(PyCapsule_GetPointer(capsule, STACK)); }

/* A whole model's step: its float32 embedding, the int8 stack, its float32 output layer.
 * Holds the stack by address: the Python object that made it keeps the stack's capsule. */
typedef struct {
    const Stack *stack;
    Head head;
    const float *embedding, *head_weight, *head_bias;
    Py_ssize_t embedding_rows, vocab;
} Network;

static const char *NETWORK = "charlm._int8step.Network";

static void free_network(PyObject *capsule) {
    PyMem_Free(PyCapsule_GetPointer(capsule, NETWORK));
}

static PyObject *stack(PyObject *module, PyObject *args) {
    (void)module;
    int cell, portable;
    Py_ssize_t hidden;
    PyObject *layers;
    if (!PyArg_ParseTuple(args, "inO!p", &cell, &hidden, &PyTuple_Type, &layers, &portable))
        return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(layers);
    if (cell < CELL_RNN_TANH || cell > CELL_LSTM || hidden < 1 || count < 1) {
        PyErr_SetString(PyExc_ValueError, "int8 stack: unknown cell, or no layers");
        return NULL;
    }
    Stack *plan = PyMem_Malloc(sizeof(Stack) + (size_t)count * sizeof(LayerWeights));
    if (plan == NULL) return PyErr_NoMemory();
    plan->cell = cell, plan->kernel = chosen_kernel(portable), plan->count = count;
    plan->hidden = hidden, plan->h_cols = padded(hidden);
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned long long w, xs, hs, bi, bh;
        LayerWeights *layer = &plan->layers[i];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(layers, i), "KKKKKn", &w, &xs, &hs, &bi, &bh,
                              &layer->input_size) ||
            layer->input_size < 1) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "int8 stack: bad layer");
            PyMem_Free(plan);
            return NULL;
        }
        layer->weights = (const uint8_t *)(uintptr_t)w;
        layer->x_scales = (const float *)(uintptr_t)xs;
        layer->h_scales = (const float *)(uintptr_t)hs;
        layer->bias_ih = (const float *)(uintptr_t)bi;
        layer->bias_hh = (const float *)(uintptr_t)bh;
        layer->x_cols = padded(layer->input_size);
    }
    PyObject *capsule = PyCapsule_New(plan, STACK, free_stack);
    if (capsule == NULL) PyMem_Free(plan);
    return capsule;
}

/* Every layer's step in turn, each reading the one below's new h. */
static int run_stack(const Stack *plan, const float *x, const float *h, const float *c,
                     float *h_out, float *c_out, Py_ssize_t rows) {
    Py_ssize_t size = rows * plan->hidden;
    for (Py_ssize_t i = 0; i < plan->count; i++) {
        const LayerWeights *layer = &plan->layers[i];
        int lstm = plan->cell == CELL_LSTM;
        Step s = {
            .weights = layer->weights, .x_scales = layer->x_scales, .h_scales = layer->h_scales,
            .bias_ih = layer->bias_ih, .bias_hh = layer->bias_hh,
            .x = i == 0 ? x : h_out + (i - 1) * size, .h = h + i * size,
            .c = lstm ? c + i * size : NULL, .h_out = h_out + i * size,
            .c_out = lstm ? c_out + i * size : NULL, .rows = rows,
            .input_size = layer->input_size, .hidden = plan->hidden, .x_cols = layer->x_cols,
            .h_cols = plan->h_cols, .cell = plan->cell,
        };
        if (run_step(&s, plan->kernel) != 0) return -1;
    }
    return 0;
}

static PyObject *stack_step(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *capsule;
    unsigned long long x, h, c, h_out, c_out;
    Py_ssize_t rows;
    if (!PyArg_ParseTuple(args, "OKKKKKn", &capsule, &x, &h, &c, &h_out, &c_out, &rows))
        return NULL;
    const Stack *plan = PyCapsule_GetPointer(capsule, STACK);
    if (plan == NULL) return NULL;
    if (rows < 1 || (plan->cell == CELL_LSTM && (c == 0 || c_out == 0))) {
        PyErr_SetString(PyExc_ValueError, "int8 step: no rows, or an LSTM without its cells");
        return NULL;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run_stack(plan, (const float *)(uintptr_t)x, (const float *)(uintptr_t)h,
                       (const float *)(uintptr_t)c, (float *)(uintptr_t)h_out,
                       (float *)(uintptr_t)c_out, rows);
    Py_END_ALLOW_THREADS
    if (status != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* The output layer's kernel: the stack's instruction set. */
static Head head_for(const Stack *plan) {
#ifdef HAVE_AVX2_PATH
    if (plan->kernel == compute_avx2) return head_avx2;
#endif
    (void)plan;
    return head_portable;
}

static PyObject *network(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *capsule;
    unsigned long long embedding, weight, bias;
    Py_ssize_t embedding_rows, vocab;
    if (!PyArg_ParseTuple(args, "OKnKKn", &capsule, &embedding, &embedding_rows, &weight, &bias,
                          &vocab))
        return NULL;
    const Stack *plan = PyCapsule_GetPointer(capsule, STACK);
    if (plan == NULL) return NULL;
    if (embedding_rows < 1 || vocab < 1) {
        PyErr_SetString(PyExc_ValueError, "int8 network: an empty embedding or output layer");
        return NULL;
    }
    Network *net = PyMem_Malloc(sizeof(Network));
    if (net == NULL) return PyErr_NoMemory();
    net->stack = plan, net->embedding_rows = embedding_rows, net->vocab = vocab;
    net->head = head_for(plan);
    net->embedding = (const float *)(uintptr_t)embedding;
    net->head_weight = (const float *)(uintptr_t)weight;
    net->head_bias = (const float *)(uintptr_t)bias;
    PyObject *result = PyCapsule_New(net, NETWORK, free_network);
    if (result == NULL) PyMem_Free(net);
    return result;
}

/* Embed the tokens, step the stack, score the vocabulary; 0, or -1 when memory ran out. */
static int run_network(const Network *net, const int64_t *tokens, const float *h,
                       const float *c, float *h_out, float *c_out, float *logits,
                       Py_ssize_t rows) {
    const Stack *plan = net->stack;
    Py_ssize_t width = plan->layers[0].input_size;
    float *x = malloc(sizeof(float) * (size_t)(rows * width));
    if (x == NULL) return -1;
    for (Py_ssize_t b = 0; b < rows; b++)
        memcpy(x + b * width, net->embedding + tokens[b] * width, sizeof(float) * (size_t)width);
    int status = run_stack(plan, x, h, c, h_out, c_out, rows);
    free(x);
    if (status != 0) return status;
    const float *top = h_out + (plan->count - 1) * rows * plan->hidden;
    for (Py_ssize_t b = 0; b < rows; b++)
        net->head(net->head_weight, net->head_bias, top + b * plan->hidden, plan->hidden,
                  net->vocab, logits + b * net->vocab);
    return 0;
}

static PyObject *network_step(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *capsule;
    unsigned long long tokens, h, c, h_out, c_out, logits;
    Py_ssize_t rows;
    if (!PyArg_ParseTuple(args, "OKKKKKKn", &capsule, &tokens, &h, &c, &h_out, &c_out, &logits,
                          &rows))
        return NULL;
    const Network *net = PyCapsule_GetPointer(capsule, NETWORK);
    if (net == NULL) return NULL;
    if (rows < 1 || (net->stack->cell == CELL_LSTM && (c == 0 || c_out == 0))) {
        PyErr_SetString(PyExc_ValueError, "int8 step: no rows, or an LSTM without its cells");
        return NULL;
    }
    const int64_t *ids = (const int64_t *)(uintptr_t)tokens;
    for (Py_ssize_t b = 0; b < rows; b++) {
        if (ids[b] < 0 || ids[b] >= net->embedding_rows) {
            PyErr_Format(PyExc_ValueError, "int8 step: token %lld is not in the embedding's %zd",
                         (long long)ids[b], net->embedding_rows);
            return NULL;
        }
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run_network(net, ids, (const float *)(uintptr_t)h, (const float *)(uintptr_t)c,
                         (float *)(uintptr_t)h_out, (float *)(uintptr_t)c_out,
                         (float *)(uintptr_t)logits, rows);
    Py_END_ALLOW_THREADS
    if (status != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *kernel(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    return PyUnicode_FromString(chosen_kernel(0) == compute_portable ? "portable" : "avx2");
}

static PyMethodDef methods[] = {
    {"stack", stack, METH_VARARGS,
     "stack(cell, hidden, layers, portable): a capsule describing stacked int8 layers; each "
     "layer (weights, x_scales, h_scales, bias_ih, bias_hh, input_size), tensors by address; "
     "portable: run the portable loop even where the CPU has AVX2."},
    {"stack_step", stack_step, METH_VARARGS,
     "stack_step(stack, x, h, c, h_out, c_out, rows): one step of every layer; x (rows, "
     "input), h and c (layers, rows, hidden) contiguous float32 by address (c 0 but for an "
     "LSTM). Writes the new h (and c) into h_out (and c_out)."},
    {"network", network, METH_VARARGS,
     "network(stack, embedding, embedding_rows, head_weight, head_bias, vocab): a capsule for "
     "a whole model's step: a float32 embedding (embedding_rows, the stack's input size), the "
     "stack, a float32 output layer (vocab, hidden) with its bias; tensors by address."},
    {"network_step", network_step, METH_VARARGS,
     "network_step(network, tokens, h, c, h_out, c_out, logits, rows): one step of the whole "
     "model; tokens (rows,) int64, the state as for stack_step, the scores written into "
     "logits (rows, vocab) float32."},
    {"kernel", kernel, METH_NOARGS, "Which dot-product kernel this CPU runs: avx2 or portable."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "_int8step", "One time step of an int8 recurrent layer.", -1, methods,
};

PyMODINIT_FUNC PyInit__int8step(void) {
    PyObject *module = PyModule_Create(&definition);
    if (module == NULL) return NULL;
    if (PyModule_AddIntConstant(module, "COLUMN_BLOCK", COLUMN_BLOCK) < 0 ||
        PyModule_AddIntConstant(module, "ACTIVATION_MAX", ACTIVATION_MAX) < 0 ||
        PyModule_AddIntConstant(module, "WEIGHT_OFFSET", WEIGHT_OFFSET) < 0 ||
        PyModule_AddIntConstant(module, "CELL_RNN_TANH", CELL_RNN_TANH) < 0 ||
        PyModule_AddIntConstant(module, "CELL_RNN_RELU", CELL_RNN_RELU) < 0 ||
        PyModule_AddIntConstant(module, "CELL_GRU", CELL_GRU) < 0 ||
        PyModule_AddIntConstant(module, "CELL_LSTM", CELL_LSTM) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
