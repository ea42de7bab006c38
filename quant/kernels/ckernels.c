/* Whole-row Q8_0, Q4_0, Q5_0, Q4_K, Q5_K and Q6_K kernels in C: the same statements as
 * fused_legacy_numba.py and fused_kquants_numba.py (which mirror ggml-quants.c's
 * quantize_row_*_ref), for machines where this file compiled at install. It loads in a
 * millisecond where numba needs about 0.35 s of import and dispatch set-up, which is most of a
 * small model's quantization, and runs at the reference C's speed.
 *
 * Exactness: every operation is float32 and rounded as written. The build passes
 * -ffp-contract=off (no fused multiply-add) and never -ffast-math; a compiler that evaluates
 * float in wider precision (x87) fails the FLT_EVAL_METHOD check below, so no library is built
 * and numba runs instead. Tests hold the bytes to ggml's own ggml_quantize_chunk.
 *
 * Each tc_*_rows(src, n, k, kind, table, out): src [n, k] row-major, float32 values (kind 0) or
 * fp16 / bf16 bits as uint16 (kind 1 / 2); table: float32 of every fp16 bit pattern (65536);
 * out [n, k / QK * block bytes]. Returns 0, or -1 if k is not a multiple of the block or
 * scratch memory could not be had. Called through ctypes, which releases the GIL.
 *
 * setuptools builds this file as the extension module tinyconvert.quant.kernels._ckernels, but
 * it is never imported: cload.py opens the shared library by path with ctypes. So it needs no
 * Python headers (none is included and no PyInit is defined), only a C compiler. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "float expressions must be evaluated in float32 for llama.cpp's bytes"
#endif

#if defined(_WIN32)
#define EXPORT __declspec(dllexport)
#else
#define EXPORT __attribute__((visibility("default")))
#endif

enum { KIND_F32 = 0, KIND_F16 = 1, KIND_BF16 = 2 };

/* ---- small helpers ---------------------------------------------------------------------- */

static void load_row(const void *src, int64_t r, int64_t k, int kind, const float *table,
                     float *buf) {
    if (kind == KIND_F32) {
        memcpy(buf, (const float *)src + r * k, (size_t)k * sizeof(float));
    } else if (kind == KIND_F16) {
        const uint16_t *s = (const uint16_t *)src + r * k;
        for (int64_t j = 0; j < k; j++) buf[j] = table[s[j]];
    } else {
        const uint16_t *s = (const uint16_t *)src + r * k;
        for (int64_t j = 0; j < k; j++) {
            uint32_t bits = (uint32_t)s[j] << 16;
            memcpy(&buf[j], &bits, 4);
        }
    }
}

static uint32_t bits_of(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}

/* float32 -> fp16 bits, round to nearest even; as numba_rows.f16_bits (numpy's astype). The
 * rare cases (inf, NaN, overflow, subnormal and zero halves) live out of line, so the common
 * one is a few instructions the block loop can overlap. */
static uint16_t f16_bits_rare(uint32_t sign, uint32_t e, uint32_t mant) {
    uint32_t h;
    if (e == 255) {
        if (mant == 0) return (uint16_t)(sign | 0x7C00u);
        h = 0x7C00u | (mant >> 13);
        return (uint16_t)(sign | (h == 0x7C00u ? h + 1 : h));
    }
    if (e >= 143) return (uint16_t)(sign | 0x7C00u);           /* |v| >= 65536: inf */
    if (e < 102) return (uint16_t)sign;                          /* rounds to zero */
    uint32_t m = mant | 0x800000u, shift = 126 - e;              /* a subnormal half */
    uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    h = m >> shift;
    if (rem > half || (rem == half && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline uint16_t f16_bits(float v) {
    uint32_t f = bits_of(v);
    uint32_t sign = (f >> 16) & 0x8000u, a = f & 0x7FFFFFFFu, e = a >> 23;
    if (__builtin_expect(e - 113u < 30u, 1)) {
        /* a normal half: round the low 13 bits to nearest even by an add; a carry out of the
         * mantissa steps the exponent, up to inf, as it should */
        uint32_t r = a + 0x0FFFu + ((a >> 13) & 1u);
        return (uint16_t)(sign | ((r >> 13) - (112u << 10)));
    }
    return f16_bits_rare(sign, e, a & 0x7FFFFFu);
}

/* Store v as little-endian fp16 at p; returns the bits. */
static uint16_t put_f16(uint8_t *p, float v) {
    uint16_t h = f16_bits(v);
    p[0] = (uint8_t)(h & 0xFF);
    p[1] = (uint8_t)(h >> 8);
    return h;
}

/* Round to nearest, ties to even, by adding 1.5 * 2^23 and reading the low mantissa bits. */
static int nearest(float v) {
    float f = v + 12582912.0f;
    return (int)(bits_of(f) & 0x007FFFFFu) - 0x00400000;
}

/* C's roundf (halves away from zero) as an int, without a libm call: |v| + 0.5 is exact in
 * double for any float v, and truncation is floor for it (|v| < 2^31; NaN and inf give what the
 * cast gives, as in ggml). */
static int round_away(float v) {
    int q = (int)((double)fabsf(v) + 0.5);
    return v < 0 ? -q : q;
}

/* The first value of largest magnitude in x[0..32) (a strict > keeps the first). */
static float signed_max(const float *x) {
    float amax = 0.0f, mx = 0.0f;
    for (int j = 0; j < 32; j++) {
        float a = fabsf(x[j]);
        if (a > amax) { amax = a; mx = x[j]; }
    }
    return mx;
}

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* ---- Q8_0, Q4_0, Q5_0: blocks of 32 ------------------------------------------------------ */

/* The codes go to a local array and are copied out at the end: stores into `o` between loads
 * of `x` (a uint8_t store may alias anything) keep the compiler from vectorising, and when the
 * two addresses share their low 12 bits the loads stall on the stores (about 1.3x slower). */

/* Q8_0 block (34 bytes): d fp16 | qs int8[32]. */
static void q8_0_block(const float *x, uint8_t *o, const float *table) {
    (void)table;
    uint8_t q[32];
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        float a = fabsf(x[j]);
        amax = amax > a ? amax : a;                      /* C's MAX: a NaN propagates */
    }
    float d = amax / 127.0f;
    float inv = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) q[j] = (uint8_t)(round_away(x[j] * inv) & 0xFF);
    put_f16(o, d);
    memcpy(o + 2, q, 32);
}

/* The codes of a Q4_0 / Q5_0 block: min(top, (int)(x * inv + top / 2 + 1)), low nibbles of
 * codes j and j + 16 into q[j]; returns bit 4 of code j at bit j (qh of Q5_0). */
static inline uint32_t legacy_codes(const float *x, float inv, int top, uint8_t *q) {
    const float bias = (float)(top + 1) / 2.0f + 0.5f;         /* 8.5f, 16.5f: exact */
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        int lo = imin(top, (int)(x[j] * inv + bias));
        int hi = imin(top, (int)(x[j + 16] * inv + bias));
        q[j] = (uint8_t)((lo & 15) | ((hi & 15) << 4));
        qh |= (uint32_t)((lo >> 4) & 1) << j;
        qh |= (uint32_t)((hi >> 4) & 1) << (j + 16);
    }
    return qh;
}

/* Q4_0 block (18 bytes): d fp16 | qs[16], byte j = code j (low nibble) | code j+16 (high). */
static void q4_0_block(const float *x, uint8_t *o, const float *table) {
    (void)table;
    uint8_t q[16];
    float d = signed_max(x) / -8.0f;
    float inv = d != 0.0f ? 1.0f / d : 0.0f;
    legacy_codes(x, inv, 15, q);
    put_f16(o, d);
    memcpy(o + 2, q, 16);
}

/* Q5_0 block (22 bytes): d fp16 | qh uint32 LE (bit 4 of each code) | qs[16] as Q4_0. */
static void q5_0_block(const float *x, uint8_t *o, const float *table) {
    (void)table;
    uint8_t q[16];
    float d = signed_max(x) / -16.0f;
    float inv = d != 0.0f ? 1.0f / d : 0.0f;
    uint32_t qh = legacy_codes(x, inv, 31, q);
    put_f16(o, d);
    for (int i = 0; i < 4; i++) o[2 + i] = (uint8_t)(qh >> (8 * i));
    memcpy(o + 6, q, 16);
}

/* ---- Q4_K, Q5_K: super-blocks of 256, 8 sub-blocks of 32 with a scale and a min ---------- */

/* Four float32 / int32 lanes, one SSE / NEON register (GCC and clang vector extensions; each
 * operation is the scalar one per lane, rounded the same, so the lanes give the scalar code's
 * bits). */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4i vbits(v4f v) { v4i r; memcpy(&r, &v, sizeof r); return r; }
static inline v4f vfloat(v4i v) { v4f r; memcpy(&r, &v, sizeof r); return r; }
/* m ? a : b per lane, m a comparison's mask (all ones or zero). */
static inline v4f vsel(v4i m, v4f a, v4f b) { return vfloat((vbits(a) & m) | (vbits(b) & ~m)); }
static inline v4i vseli(v4i m, v4i a, v4i b) { return (a & m) | (b & ~m); }
static inline v4i vnearest(v4f v) {                   /* nearest() per lane */
    return (vbits(v + 12582912.0f) & 0x007FFFFF) - 0x00400000;
}
static inline v4i vclamp(v4i q, int hi) {             /* max(0, min(hi, q)) */
    const v4i zero = {0}, top = zero + hi;
    q = vseli(q > zero, q, zero);
    return vseli(q < top, q, top);
}

/* make_qkx2_quants(32, nmax, x, w, L, &min, Laux, rmin, 0.1, nstep, false) for 4 sub-blocks
 * of a super-block side by side: lane s is sub-block s (X[i][s] = weight i of sub-block s), so
 * every statement runs across the lanes while each lane adds its i = 0..31 in C's order and
 * takes its own branches (as masks). A lane whose values are all equal takes ggml's early exit
 * (codes 0, scale 0); its other arithmetic runs on and is thrown away.
 * Codes into L[32 s + i], scales[s], mins[s] (= -min). */
static void qkx2_4(const v4f X[32], const v4f W[32], int nmax, float rmin, int nstep,
                   uint8_t *L, float *scales, float *mins) {
    const v4f zero = {0};
    v4f La[32];
    v4i Lb[32];
    v4f mn = X[0], mx = X[0], sw = W[0], sx = W[0] * X[0];
    for (int i = 1; i < 32; i++) {
        mn = vsel(X[i] < mn, X[i], mn);
        mx = vsel(X[i] > mx, X[i], mx);
        sw += W[i];
        sx += W[i] * X[i];
    }
    mn = vsel(mn > zero, zero, mn);
    const v4f mn0 = mn;
    const v4i flat = mx == mn;
    v4f iscale = (float)nmax / (mx - mn), scale = 1.0f / iscale, best = zero;
    for (int i = 0; i < 32; i++) {
        Lb[i] = vclamp(vnearest(iscale * (X[i] - mn)), nmax);
        v4f d = scale * __builtin_convertvector(Lb[i], v4f) + mn - X[i];
        best += W[i] * (d * d);
    }
    for (int step = 0; step <= nstep; step++) {
        iscale = (rmin + 0.1f * (float)step + (float)nmax) / (mx - mn);
        v4f sl = zero, sl2 = zero, sxl = zero, cur = zero;
        for (int i = 0; i < 32; i++) {
            v4f fl = __builtin_convertvector(vclamp(vnearest(iscale * (X[i] - mn)), nmax), v4f);
            La[i] = fl;
            v4f wl = W[i] * fl;
            sl += wl;
            sl2 += wl * fl;
            sxl += wl * X[i];
        }
        v4f D = sw * sl2 - sl * sl;
        v4f ts = (sw * sxl - sx * sl) / D, tm = (sl2 * sx - sl * sxl) / D;
        v4i pos = tm > zero;
        ts = vsel(pos, sxl / sl2, ts);
        tm = vsel(pos, zero, tm);
        for (int i = 0; i < 32; i++) {
            v4f d = ts * La[i] + tm - X[i];
            cur += W[i] * (d * d);
        }
        v4i better = (D > zero) & (cur < best);      /* ggml tries a candidate only if D > 0 */
        best = vsel(better, cur, best);
        scale = vsel(better, ts, scale);
        mn = vsel(better, tm, mn);
        for (int i = 0; i < 32; i++)
            Lb[i] = vseli(better, __builtin_convertvector(La[i], v4i), Lb[i]);
    }
    for (int s = 0; s < 4; s++) {
        if (flat[s]) {
            memset(L + 32 * s, 0, 32);
            scales[s] = 0;
            mins[s] = -mn0[s];
            continue;
        }
        for (int i = 0; i < 32; i++) L[32 * s + i] = (uint8_t)Lb[i][s];
        scales[s] = scale[s];
        mins[s] = -mn[s];
    }
}

/* One Q4_K / Q5_K super-block of x[0..256): the head at o (d fp16 | dmin fp16 | scales[12],
 * 6-bit scale and min codes packed as get_scale_min_k4 reads them), the 256 codes in L. */
static void qk_head(const float *x, int nmax, float rmin, int nstep, uint8_t *o, uint8_t *L,
                    const float *table) {
    float scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int g = 0; g < 2; g++) {                   /* sub-blocks 4g .. 4g + 3 */
        v4f X[32], W[32], sum_x2 = {0}, av = {0};
        for (int i = 0; i < 32; i++)
            for (int s = 0; s < 4; s++) X[i][s] = x[32 * (4 * g + s) + i];
        for (int i = 0; i < 32; i++) sum_x2 += X[i] * X[i];
        for (int s = 0; s < 4; s++) av[s] = sqrtf(sum_x2[s] / 32.0f);
        for (int i = 0; i < 32; i++) W[i] = av + vfloat(vbits(X[i]) & 0x7FFFFFFF);   /* fabsf */
        qkx2_4(X, W, nmax, rmin, nstep, L + 128 * g, scales + 4 * g, mins + 4 * g);
    }
    for (int s = 0; s < 8; s++) {
        if (scales[s] > max_scale) max_scale = scales[s];
        if (mins[s] > max_min) max_min = mins[s];
    }
    float inv_s = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_m = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t *sc = o + 4;
    memset(sc, 0, 12);
    for (int s = 0; s < 8; s++) {
        int ls = imin(63, nearest(inv_s * scales[s]) & 0xFF);
        int lm = imin(63, nearest(inv_m * mins[s]) & 0xFF);
        if (s < 4) {
            sc[s] = (uint8_t)ls;
            sc[4 + s] = (uint8_t)lm;
        } else {
            sc[4 + s] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            sc[s - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[s] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    float d = table[put_f16(o, max_scale / 63.0f)];
    float dmin = table[put_f16(o + 2, max_min / 63.0f)];
    for (int s = 0; s < 8; s++) {
        int q, m;
        if (s < 4) {
            q = sc[s] & 63;
            m = sc[4 + s] & 63;
        } else {
            q = (sc[4 + s] & 0xF) | ((sc[s - 4] >> 6) << 4);
            m = (sc[4 + s] >> 4) | ((sc[s] >> 6) << 4);
        }
        float dd = d * (float)q;
        if (dd == 0) continue;
        float dm = dmin * (float)m;
        for (int i = 0; i < 32; i++)
            L[32 * s + i] = (uint8_t)imax(0, imin(nmax, nearest((x[32 * s + i] + dm) / dd)));
    }
}

/* Q4_K (144 bytes): head (16) | qs[128]: byte 32c + j = code 64c + j | code 64c + 32 + j << 4. */
static void q4_k_block(const float *x, uint8_t *o, const float *table) {
    uint8_t L[256];
    qk_head(x, 15, -1.0f, 20, o, L, table);
    for (int c = 0; c < 4; c++)
        for (int j = 0; j < 32; j++)
            o[16 + 32 * c + j] = (uint8_t)(L[64 * c + j] | (L[64 * c + 32 + j] << 4));
}

/* Q5_K (176 bytes): head (16) | qh[32]: bit 2c of byte j = bit 4 of code 64c + j, bit 2c + 1
 * that of 64c + 32 + j | qs[128] as Q4_K with the low nibbles. */
static void q5_k_block(const float *x, uint8_t *o, const float *table) {
    uint8_t L[256];
    qk_head(x, 31, -0.5f, 15, o, L, table);
    for (int j = 0; j < 32; j++) {
        int h = 0;
        for (int c = 0; c < 4; c++) {
            h |= ((L[64 * c + j] >> 4) & 1) << (2 * c);
            h |= ((L[64 * c + 32 + j] >> 4) & 1) << (2 * c + 1);
        }
        o[16 + j] = (uint8_t)h;
    }
    for (int c = 0; c < 4; c++)
        for (int j = 0; j < 32; j++)
            o[48 + 32 * c + j] = (uint8_t)((L[64 * c + j] & 15) | ((L[64 * c + 32 + j] & 15) << 4));
}

/* ---- Q6_K: super-blocks of 256, 16 sub-blocks of 16 with an int8 scale ------------------- */

/* make_qx_quants(16, 32, x + 16 s, L + 16 s, 1, NULL) for the 16 sub-blocks at once: lane s is
 * sub-block s, so the candidate sums run across lanes (vectorisable) while each lane still adds
 * i = 0..15 in C's order. |iscale x| <= 33 here, where (v + 1.5 * 2^23) - 1.5 * 2^23 in float32
 * is nearest(). Codes in [0, 64) into L, scales into scales. */
static void qx16(const float *x, uint8_t *L, float *scales) {
    float xs[16][16], w[16][16], wx[16][16], iscale[19][16];
    float sumlx[16], suml2[16], best[16], best_is[16], mxs[16];
    const float eps = 1e-15f, magic = 12582912.0f;
    for (int s = 0; s < 16; s++) {
        float amax = 0, mx = 0;
        for (int i = 0; i < 16; i++) {
            float xi = x[16 * s + i];
            xs[i][s] = xi;
            if (fabsf(xi) > amax) { amax = fabsf(xi); mx = xi; }
            w[i][s] = xi * xi;
            wx[i][s] = w[i][s] * xi;
        }
        mxs[s] = amax >= eps ? mx : 1.0f;
        for (int t = 0; t < 19; t++) {             /* candidate 0: nmax; then nmax + 0.1 step */
            int step = t <= 9 ? t - 10 : t - 9;
            float num = t == 0 ? 32.0f : 32.0f + 0.1f * (float)step;
            iscale[t][s] = -num / mxs[s];
        }
        if (amax < eps) mxs[s] = 0;
    }
    for (int t = 0; t < 19; t++) {
        for (int s = 0; s < 16; s++) sumlx[s] = suml2[s] = 0;
        for (int i = 0; i < 16; i++)
            for (int s = 0; s < 16; s++) {
                float fl = (iscale[t][s] * xs[i][s] + magic) - magic;
                fl = fl > -32.0f ? fl : -32.0f;     /* maxps / minps: a NaN becomes the bound */
                fl = fl < 31.0f ? fl : 31.0f;
                sumlx[s] += wx[i][s] * fl;
                suml2[s] += w[i][s] * fl * fl;
            }
        for (int s = 0; s < 16; s++) {
            if (t == 0) {
                scales[s] = suml2[s] != 0 ? sumlx[s] / suml2[s] : 0.0f;
                best[s] = scales[s] * sumlx[s];
                best_is[s] = iscale[0][s];
            } else if (suml2[s] > 0 && sumlx[s] * sumlx[s] > best[s] * suml2[s]) {
                best_is[s] = iscale[t][s];
                scales[s] = sumlx[s] / suml2[s];
                best[s] = scales[s] * sumlx[s];
            }
        }
    }
    for (int s = 0; s < 16; s++) {
        if (mxs[s] == 0) {
            scales[s] = 0;
            memset(L + 16 * s, 0, 16);
            continue;
        }
        for (int i = 0; i < 16; i++)
            L[16 * s + i] = (uint8_t)(32 + imax(-32, imin(31, nearest(best_is[s] * xs[i][s]))));
    }
}

/* Q6_K (210 bytes): ql[128] (low nibbles) | qh[64] (high 2 bits) | scales int8[16] | d fp16.
 * Half h covers weights 128h..128h+128: ql byte 64h + j = codes a | a + 64 << 4 and byte
 * 64h + 32 + j = codes a + 32 | a + 96 << 4 (a = 128h + j); qh byte 32h + j = the top two bits
 * of a, a + 32, a + 64, a + 96 in bits 0-1, 2-3, 4-5, 6-7. */
static void q6_k_block(const float *x, uint8_t *o, const float *table) {
    uint8_t L[256];
    float scales[16], max_scale = 0, max_abs = 0;
    qx16(x, L, scales);
    for (int s = 0; s < 16; s++)
        if (fabsf(scales[s]) > max_abs) { max_abs = fabsf(scales[s]); max_scale = scales[s]; }
    if (max_abs < 1e-15f) {
        memset(o, 0, 210);
        return;
    }
    float iscale = -128.0f / max_scale;
    float d = table[put_f16(o + 208, 1.0f / iscale)];
    for (int s = 0; s < 16; s++) {
        int q = imin(127, nearest(iscale * scales[s]));
        o[192 + s] = (uint8_t)(q & 0xFF);
        float dd = d * (float)(int8_t)(q & 0xFF);
        if (dd == 0) continue;
        for (int i = 0; i < 16; i++)
            L[16 * s + i] = (uint8_t)(32 + imax(-32, imin(31, nearest(x[16 * s + i] / dd))));
    }
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 32; j++) {
            int a = 128 * h + j;
            o[64 * h + j] = (uint8_t)((L[a] & 15) | ((L[a + 64] & 15) << 4));
            o[64 * h + 32 + j] = (uint8_t)((L[a + 32] & 15) | ((L[a + 96] & 15) << 4));
            o[128 + 32 * h + j] = (uint8_t)((L[a] >> 4) | ((L[a + 32] >> 4) << 2)
                                            | ((L[a + 64] >> 4) << 4) | ((L[a + 96] >> 4) << 6));
        }
}

/* ---- the row drivers ------------------------------------------------------------------- */

static int check_args(int qk, int64_t k, int kind) {
    return k <= 0 || k % qk || kind < KIND_F32 || kind > KIND_BF16 ? -1 : 0;
}

/* One exported driver per type, the block function called directly so it inlines. */
#define ROWS(name, qk, bytes)                                                               \
    EXPORT int tc_##name##_rows(const void *src, int64_t n, int64_t k, int kind,            \
                                const float *table, uint8_t *out) {                        \
        if (check_args(qk, k, kind)) return -1;                                             \
        float *buf = (float *)malloc((size_t)k * sizeof(float));                            \
        if (!buf) return -1;                                                                \
        int64_t nb = k / qk;                                                                \
        for (int64_t r = 0; r < n; r++) {                                                   \
            const float *x = kind == KIND_F32 ? (const float *)src + r * k : buf;              \
            if (kind != KIND_F32) load_row(src, r, k, kind, table, buf);                       \
            uint8_t *o = out + r * nb * bytes;                                                 \
            for (int64_t b = 0; b < nb; b++) name##_block(x + b * qk, o + b * bytes, table);   \
        }                                                                                   \
        free(buf);                                                                          \
        return 0;                                                                           \
    }

ROWS(q8_0, 32, 34)
ROWS(q4_0, 32, 18)
ROWS(q5_0, 32, 22)
ROWS(q4_k, 256, 144)
ROWS(q5_k, 256, 176)
ROWS(q6_k, 256, 210)

/* fp16 bits of n float32 values (tests hold this rounding to numpy's). */
EXPORT void tc_f16_bits(const float *v, int64_t n, uint16_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = f16_bits(v[i]);
}
