/*
 * The compiled kernels of tf2pt's data path: a bit-exact out-of-place transpose (kernels go from
 * TensorFlow's [in, out] to PyTorch's [out, in]) and CRC-32C, alone or fused with the transpose.
 *
 * Why by hand:
 * - NumPy copies a transposed view element by element along strided rows, far below memory speed
 *   even when tiled from Python; the libraries that do better (PyTorch, OpenCV) cost a heavy
 *   import or a large dependency for one function. Square tiles that stay in L1, and on x86-64 a
 *   4x4 register transpose with SSE2 (part of the baseline instruction set, so the same binary
 *   runs on every x86-64 machine), are several times faster on BERT's shapes (docs/performance.md).
 * - google-crc32c (used everywhere else) holds the GIL while it hashes and accepts only buffers it
 *   need not release, so it cannot hash a memoryview of the memory-mapped checkpoint, and it
 *   cannot be fused with the transpose. Fused, every byte of a kernel is read from memory once:
 *   a band of rows is hashed while it is brought into the cache, then transposed from the cache.
 *   The CRC uses the SSE4.2 crc32 instruction, chosen at run time (HARDWARE_CRC32C says whether
 *   this machine has it); without it bertconv hashes with google-crc32c instead.
 *
 * Values are moved as raw bits (integer loads, stores and unpacks): NaN payloads, signed zeros
 * and subnormals arrive unchanged. Elements may be unaligned (TensorFlow packs tensors back to
 * back), so scalar accesses go through memcpy. The GIL is released while working.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define BERTCONV_SSE2 1
#else
#define BERTCONV_SSE2 0
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define BERTCONV_CRC_X86 1
#else
#define BERTCONV_CRC_X86 0
#endif

/* Tile side in elements: a 64x64 tile of 4-byte values is 16 KB read and 16 KB written, within L1
 * (the other sides tried: docs/performance.md).
 * A band of TILE source rows is also the unit the fused CRC hashes before transposing it: for
 * BERT's widest rows (4096 values) that is 1 MB, about one L2. */
#ifndef TILE
#define TILE 64
#endif

/* ---------------------------------------------------------------------------------- transpose
 * Each function writes the transpose of source rows [r0, r1) of a rows x cols matrix: the
 * destination is cols x rows, and the band fills columns [r0, r1) of it. */
typedef void (*band_fn)(const unsigned char *src, unsigned char *dst, size_t rows, size_t cols,
                        size_t r0, size_t r1);

#define DEFINE_SCALAR_BAND(NAME, TYPE)                                                          \
    static void NAME(const unsigned char *src, unsigned char *dst, size_t rows, size_t cols,    \
                     size_t r0, size_t r1) {                                                    \
        for (size_t c0 = 0; c0 < cols; c0 += TILE) {                                            \
            size_t c1 = c0 + TILE < cols ? c0 + TILE : cols;                                    \
            for (size_t c = c0; c < c1; c++) {                                                  \
                for (size_t r = r0; r < r1; r++) {                                              \
                    TYPE value;                                                                 \
                    memcpy(&value, src + (r * cols + c) * sizeof(TYPE), sizeof(TYPE));          \
                    memcpy(dst + (c * rows + r) * sizeof(TYPE), &value, sizeof(TYPE));          \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

DEFINE_SCALAR_BAND(band_1, uint8_t)
DEFINE_SCALAR_BAND(band_2, uint16_t)
DEFINE_SCALAR_BAND(band_4_scalar, uint32_t)
DEFINE_SCALAR_BAND(band_8, uint64_t)

#if BERTCONV_SSE2
/* 4x4 blocks in registers; the rows of the band past the last multiple of 4, and the columns past
 * cols rounded down to 4, go element by element. r0 is a multiple of TILE, hence of 4. */
static void band_4(const unsigned char *src, unsigned char *dst, size_t rows, size_t cols,
                   size_t r0, size_t r1) {
    size_t r1_4 = r0 + ((r1 - r0) & ~(size_t)3), cols4 = cols & ~(size_t)3;
    size_t src_row = cols * 4, dst_row = rows * 4;
    for (size_t c0 = 0; c0 < cols4; c0 += TILE) {
        size_t c1 = c0 + TILE < cols4 ? c0 + TILE : cols4;
        for (size_t c = c0; c < c1; c += 4) {
            for (size_t r = r0; r < r1_4; r += 4) {
                const unsigned char *s = src + r * src_row + c * 4;
                unsigned char *d = dst + c * dst_row + r * 4;
                __m128i a = _mm_loadu_si128((const __m128i *)s);
                __m128i b = _mm_loadu_si128((const __m128i *)(s + src_row));
                __m128i e = _mm_loadu_si128((const __m128i *)(s + 2 * src_row));
                __m128i f = _mm_loadu_si128((const __m128i *)(s + 3 * src_row));
                __m128i ab_lo = _mm_unpacklo_epi32(a, b), ab_hi = _mm_unpackhi_epi32(a, b);
                __m128i ef_lo = _mm_unpacklo_epi32(e, f), ef_hi = _mm_unpackhi_epi32(e, f);
                _mm_storeu_si128((__m128i *)d, _mm_unpacklo_epi64(ab_lo, ef_lo));
                _mm_storeu_si128((__m128i *)(d + dst_row), _mm_unpackhi_epi64(ab_lo, ef_lo));
                _mm_storeu_si128((__m128i *)(d + 2 * dst_row), _mm_unpacklo_epi64(ab_hi, ef_hi));
                _mm_storeu_si128((__m128i *)(d + 3 * dst_row), _mm_unpackhi_epi64(ab_hi, ef_hi));
            }
        }
    }
    for (size_t r = r0; r < r1; r++) {
        for (size_t c = r < r1_4 ? cols4 : 0; c < cols; c++) {
            uint32_t value;
            memcpy(&value, src + (r * cols + c) * 4, 4);
            memcpy(dst + (c * rows + r) * 4, &value, 4);
        }
    }
}
#else
#define band_4 band_4_scalar
#endif

static band_fn band_for(Py_ssize_t itemsize) {
    switch (itemsize) {
    case 1: return band_1;
    case 2: return band_2;
    case 4: return band_4;
    default: return band_8;
    }
}

/* ------------------------------------------------------------------------------------- CRC-32C
 * Operates on the register value (the caller inverts before and after, as the CRC's definition
 * does), so a hash can go on across calls. */
static int hardware_crc32c = 0;

#if BERTCONV_CRC_X86
/* The crc32 instruction takes 3 cycles and issues one per cycle: three streams hashed side by
 * side run up to 3x faster than one, which brings the hash to memory speed (docs/performance.md).
 * Each chunk of 3 * STREAM bytes is hashed as three independent streams, then joined:
 * the register after A|B|C is shift(shift(crc(A)) ^ crc(B)) ^ crc(C), where shift() advances a
 * register over STREAM zero bytes. shift() is linear, so it is four table lookups, one per byte
 * of the register; the tables are built once, with the instruction itself, at import. */
#define STREAM 4096
static uint32_t shift_table[4][256];

__attribute__((target("sse4.2")))
static uint32_t crc32c_one_stream(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}

static uint32_t shift_stream(uint32_t c) {
    return shift_table[0][c & 0xff] ^ shift_table[1][(c >> 8) & 0xff] ^
           shift_table[2][(c >> 16) & 0xff] ^ shift_table[3][c >> 24];
}

__attribute__((target("sse4.2")))
static void build_shift_table(void) {
    static const unsigned char zeros[STREAM];
    uint32_t basis[32];
    for (int bit = 0; bit < 32; bit++)
        basis[bit] = crc32c_one_stream((uint32_t)1 << bit, zeros, STREAM);
    for (int byte = 0; byte < 4; byte++)
        for (int value = 0; value < 256; value++) {
            uint32_t shifted = 0;
            for (int bit = 0; bit < 8; bit++)
                if (value >> bit & 1)
                    shifted ^= basis[8 * byte + bit];
            shift_table[byte][value] = shifted;
        }
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_update(uint32_t crc, const unsigned char *p, size_t n) {
    while (n >= 3 * STREAM) {
        uint64_t a = crc, b = 0, c = 0;
        for (size_t i = 0; i < STREAM; i += 8) {
            uint64_t va, vb, vc;
            memcpy(&va, p + i, 8);
            memcpy(&vb, p + STREAM + i, 8);
            memcpy(&vc, p + 2 * STREAM + i, 8);
            a = _mm_crc32_u64(a, va);
            b = _mm_crc32_u64(b, vb);
            c = _mm_crc32_u64(c, vc);
        }
        crc = shift_stream(shift_stream((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
        p += 3 * STREAM;
        n -= 3 * STREAM;
    }
    return crc32c_one_stream(crc, p, n);
}

static void detect_crc32c(void) {
    __builtin_cpu_init();
    hardware_crc32c = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    if (hardware_crc32c)
        build_shift_table();
}
#else
static uint32_t crc32c_update(uint32_t crc, const unsigned char *p, size_t n) {
    (void)p;
    (void)n;
    return crc; /* never called: HARDWARE_CRC32C is 0 */
}

static void detect_crc32c(void) { hardware_crc32c = 0; }
#endif

/* --------------------------------------------------------------------------------- arguments */
static int require_crc(void) {
    if (!hardware_crc32c) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU has no CRC-32C instruction (HARDWARE_CRC32C is 0)");
        return -1;
    }
    return 0;
}

/* Checks the shapes and sizes of a transpose; on failure releases both buffers and sets the error. */
static int check_transpose(Py_buffer *source, Py_buffer *destination, Py_ssize_t rows, Py_ssize_t cols,
                           Py_ssize_t itemsize) {
    const char *problem = NULL;
    if (rows < 0 || cols < 0)
        problem = "rows and cols must not be negative";
    else if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8)
        problem = "itemsize must be 1, 2, 4 or 8";
    else if (cols != 0 && rows > PY_SSIZE_T_MAX / cols / itemsize)
        problem = "rows * cols * itemsize overflows";
    else if (source->len != rows * cols * itemsize || destination->len != source->len)
        problem = "buffer sizes differ from rows * cols * itemsize";
    else {
        const char *s = source->buf, *d = destination->buf;
        if (source->len && s < d + destination->len && d < s + source->len)
            problem = "source and destination overlap";
    }
    if (problem) {
        PyBuffer_Release(source);
        PyBuffer_Release(destination);
        PyErr_SetString(PyExc_ValueError, problem);
        return -1;
    }
    return 0;
}

/* Transposes band by band; with `crc` not NULL, hashes each band of the source just before it
 * is transposed (the band is then read from the cache). */
static void transpose_bands(const unsigned char *s, unsigned char *d, size_t rows, size_t cols,
                            Py_ssize_t itemsize, uint32_t *crc) {
    band_fn band = band_for(itemsize);
    size_t row_bytes = cols * (size_t)itemsize;
    for (size_t r0 = 0; r0 < rows; r0 += TILE) {
        size_t r1 = r0 + TILE < rows ? r0 + TILE : rows;
        if (crc)
            *crc = crc32c_update(*crc, s + r0 * row_bytes, (r1 - r0) * row_bytes);
        band(s, d, rows, cols, r0, r1);
    }
}

/* ------------------------------------------------------------------------------------ Python */
PyDoc_STRVAR(transpose_doc,
"transpose(source, destination, rows, cols, itemsize)\n\n"
"Write the transpose of the row-major rows x cols matrix in `source` (any C-contiguous buffer)\n"
"into `destination` (a writable C-contiguous buffer of the same size), bit for bit.\n"
"itemsize is 1, 2, 4 or 8 bytes. The GIL is released while copying.");

static PyObject *transpose(PyObject *module, PyObject *args) {
    Py_buffer source, destination;
    Py_ssize_t rows, cols, itemsize;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*w*nnn:transpose", &source, &destination, &rows, &cols, &itemsize))
        return NULL;
    if (check_transpose(&source, &destination, rows, cols, itemsize) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    transpose_bands(source.buf, destination.buf, (size_t)rows, (size_t)cols, itemsize, NULL);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&source);
    PyBuffer_Release(&destination);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(transpose_crc32c_doc,
"transpose_crc32c(source, destination, rows, cols, itemsize, crc=0) -> int\n\n"
"transpose(), also returning the CRC-32C of `source` continued from `crc` (as\n"
"google_crc32c.extend(crc, source) would). Needs HARDWARE_CRC32C.");

static PyObject *transpose_crc32c(PyObject *module, PyObject *args) {
    Py_buffer source, destination;
    Py_ssize_t rows, cols, itemsize;
    unsigned long start = 0;
    (void)module;
    if (require_crc() < 0)
        return NULL;
    if (!PyArg_ParseTuple(args, "y*w*nnn|k:transpose_crc32c", &source, &destination, &rows, &cols,
                          &itemsize, &start))
        return NULL;
    if (check_transpose(&source, &destination, rows, cols, itemsize) < 0)
        return NULL;
    uint32_t crc = ~(uint32_t)start;
    Py_BEGIN_ALLOW_THREADS
    transpose_bands(source.buf, destination.buf, (size_t)rows, (size_t)cols, itemsize, &crc);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&source);
    PyBuffer_Release(&destination);
    return PyLong_FromUnsignedLong(~crc);
}

PyDoc_STRVAR(crc32c_doc,
"crc32c(data, crc=0) -> int\n\n"
"CRC-32C of any C-contiguous buffer (a memoryview of a memory map included), continued from\n"
"`crc` as google_crc32c.extend(crc, data) would. Needs HARDWARE_CRC32C. The GIL is released.");

static PyObject *crc32c(PyObject *module, PyObject *args) {
    Py_buffer data;
    unsigned long start = 0;
    (void)module;
    if (require_crc() < 0)
        return NULL;
    if (!PyArg_ParseTuple(args, "y*|k:crc32c", &data, &start))
        return NULL;
    uint32_t crc = ~(uint32_t)start;
    Py_BEGIN_ALLOW_THREADS
    crc = crc32c_update(crc, data.buf, (size_t)data.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(~crc);
}

static PyMethodDef methods[] = {
    {"transpose", transpose, METH_VARARGS, transpose_doc},
    {"transpose_crc32c", transpose_crc32c, METH_VARARGS, transpose_crc32c_doc},
    {"crc32c", crc32c, METH_VARARGS, crc32c_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "bertconv._kernels",
    "The compiled kernels of tf2pt: a bit-exact transpose and CRC-32C (see bertconv/_kernels.c).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__kernels(void) {
    detect_crc32c();
    PyObject *module = PyModule_Create(&module_def);
    if (module && (PyModule_AddIntConstant(module, "SSE2", BERTCONV_SSE2) < 0 ||
                   PyModule_AddIntConstant(module, "HARDWARE_CRC32C", hardware_crc32c) < 0)) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
