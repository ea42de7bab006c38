"""Whole-row Q4_K, Q5_K and Q6_K kernels (no importance matrix): source rows (float32, fp16 or
bf16 bits) straight to finished 256-weight super-blocks in one compiled pass: the sub-block
searches (make_qkx2_quants, make_qx_quants rmse_type 1), the 6-bit / 8-bit scale codes, the fp16
super-scales, the requantization against the coded scales and the bit packing, as
ggml-quants.c's quantize_row_q4_K_ref, _q5_K_ref and _q6_K_ref do it, float32 throughout (the
numpy ports in kquants.py stay the reference; tests hold both to llama.cpp's bytes).

Each kernel: (src [n, k], kind, table, out uint8 [n, k/256*block]) -> None; kind and table as
in numba_rows.load_row. They release the GIL; the writer's threads run chunks in parallel."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from tinyconvert.quant.kernels.numba_rows import f32_bits, load_row, put_f16

MAGIC = np.float32(12582912.0)     # 1.5 * 2^23: adding it rounds a float32 to an int, ties even
EPS = np.float32(1e-15)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _nearest(v):
    """ggml's nearest_int: add 1.5 * 2^23 in float32 and read the low mantissa bits (ties to
    even; inf and NaN give what C gives)."""
    return (f32_bits(np.float32(v + MAGIC)) & 0x007FFFFF) - 0x00400000


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _qkx2(x, w, L, l0, Laux, nmax, rmin, nstep, mins, s):
    """make_qkx2_quants(32, nmax, x, w, L + l0, &mins[s], Laux, rmin, 0.1, nstep, false) for
    the 32 values in x (a scratch copy indexed from 0); Laux holds codes as float32. Returns
    the scale."""
    mn = x[0]
    mx = x[0]
    sum_w = w[0]
    sum_x = np.float32(sum_w * x[0])
    for i in range(1, 32):
        xi = x[i]
        if xi < mn:
            mn = xi
        if xi > mx:
            mx = xi
        sum_w = np.float32(sum_w + w[i])
        sum_x = np.float32(sum_x + np.float32(w[i] * xi))
    if mn > 0:
        mn = np.float32(0)
    if mx == mn:
        for i in range(32):
            L[l0 + i] = 0
        mins[s] = -mn
        return np.float32(0)
    fnmax = np.float32(nmax)
    iscale = np.float32(fnmax / np.float32(mx - mn))
    scale = np.float32(np.float32(1) / iscale)
    best = np.float32(0)
    for i in range(32):
        q = max(0, min(nmax, _nearest(np.float32(iscale * np.float32(x[i] - mn)))))
        L[l0 + i] = q
        d = np.float32(np.float32(np.float32(scale * np.float32(q)) + mn) - x[i])
        best = np.float32(best + np.float32(w[i] * np.float32(d * d)))
    for step in range(nstep + 1):
        iscale = np.float32(np.float32(np.float32(rmin + np.float32(np.float32(0.1)
                                                                    * np.float32(step)))
                                       + fnmax) / np.float32(mx - mn))
        sum_l = np.float32(0)
        sum_l2 = np.float32(0)
        sum_xl = np.float32(0)
        for i in range(32):
            fl = np.float32(max(0, min(nmax, _nearest(np.float32(iscale
                                                                 * np.float32(x[i] - mn))))))
            Laux[i] = fl
            wl = np.float32(w[i] * fl)
            sum_l = np.float32(sum_l + wl)
            sum_l2 = np.float32(sum_l2 + np.float32(wl * fl))
            sum_xl = np.float32(sum_xl + np.float32(wl * x[i]))
        D = np.float32(np.float32(sum_w * sum_l2) - np.float32(sum_l * sum_l))
        if D > 0:
            this_scale = np.float32(np.float32(np.float32(sum_w * sum_xl)
                                               - np.float32(sum_x * sum_l)) / D)
            this_min = np.float32(np.float32(np.float32(sum_l2 * sum_x)
                                             - np.float32(sum_l * sum_xl)) / D)
            if this_min > 0:
                this_min = np.float32(0)
                this_scale = np.float32(sum_xl / sum_l2)
            cur = np.float32(0)
            for i in range(32):
                d = np.float32(np.float32(np.float32(this_scale * Laux[i]) + this_min) - x[i])
                cur = np.float32(cur + np.float32(w[i] * np.float32(d * d)))
            if cur < best:
                for i in range(32):
                    L[l0 + i] = np.uint8(Laux[i])
                best = cur
                scale = this_scale
                mn = this_min
    mins[s] = -mn
    return scale


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _qk_block(x, x0, nmax, rmin, nstep, out, r, o, L, Laux, xs, w, scales, mins, table):
    """One Q4_K / Q5_K super-block of x[x0:x0+256]: the head (d, dmin, scales[12]) at
    out[r, o:o+16]; the 256 codes (before packing) in L. Laux, xs, w: scratch of 32."""
    max_scale = np.float32(0)
    max_min = np.float32(0)
    for s in range(8):
        j0 = x0 + 32 * s
        sum_x2 = np.float32(0)
        for i in range(32):
            xs[i] = x[j0 + i]
            sum_x2 = np.float32(sum_x2 + np.float32(xs[i] * xs[i]))
        av = np.float32(math.sqrt(np.float32(sum_x2 / np.float32(32))))
        for i in range(32):
            w[i] = np.float32(av + abs(xs[i]))
        scales[s] = _qkx2(xs, w, L, 32 * s, Laux, nmax, rmin, nstep, mins, s)
        if scales[s] > max_scale:
            max_scale = scales[s]
        if mins[s] > max_min:
            max_min = mins[s]
    inv_s = np.float32(np.float32(63) / max_scale) if max_scale > 0 else np.float32(0)
    inv_m = np.float32(np.float32(63) / max_min) if max_min > 0 else np.float32(0)
    for i in range(12):
        out[r, o + 4 + i] = 0
    for s in range(8):
        ls = min(63, _nearest(np.float32(inv_s * scales[s])) & 0xFF)
        lm = min(63, _nearest(np.float32(inv_m * mins[s])) & 0xFF)
        if s < 4:
            out[r, o + 4 + s] = ls
            out[r, o + 8 + s] = lm
        else:
            out[r, o + 8 + s] = (ls & 0xF) | ((lm & 0xF) << 4)
            out[r, o + s] |= (ls >> 4) << 6
            out[r, o + 4 + s] |= (lm >> 4) << 6
    d = table[put_f16(out, r, o, np.float32(max_scale / np.float32(63)))]
    dmin = table[put_f16(out, r, o + 2, np.float32(max_min / np.float32(63)))]
    for s in range(8):
        if s < 4:
            sc = out[r, o + 4 + s] & 63
            m = out[r, o + 8 + s] & 63
        else:
            sc = (out[r, o + 8 + s] & 0xF) | ((out[r, o + s] >> 6) << 4)
            m = (out[r, o + 8 + s] >> 4) | ((out[r, o + 4 + s] >> 6) << 4)
        dd = np.float32(d * np.float32(sc))
        if dd == 0:
            continue
        dm = np.float32(dmin * np.float32(m))
        for i in range(32):
            j = x0 + 32 * s + i
            L[32 * s + i] = max(0, min(nmax, _nearest(np.float32(np.float32(x[j] + dm) / dd))))


@njit(nogil=True, cache=True, error_model="numpy")
def q4_k_rows(src, kind, table, out):
    n, k = src.shape
    buf = np.empty(k, np.float32)
    L = np.zeros(256, np.uint8)
    Laux = np.zeros(32, np.float32)
    xs = np.zeros(32, np.float32)
    w = np.zeros(32, np.float32)
    scales = np.zeros(8, np.float32)
    mins = np.zeros(8, np.float32)
    for r in range(n):
        load_row(src, r, kind, table, buf)
        for b in range(k // 256):
            o = 144 * b
            _qk_block(buf, 256 * b, 15, np.float32(-1), 20, out, r, o, L, Laux, xs, w, scales,
                      mins, table)
            for c in range(4):
                for j in range(32):
                    out[r, o + 16 + 32 * c + j] = L[64 * c + j] | (L[64 * c + 32 + j] << 4)


@njit(nogil=True, cache=True, error_model="numpy")
def q5_k_rows(src, kind, table, out):
    n, k = src.shape
    buf = np.empty(k, np.float32)
    L = np.zeros(256, np.uint8)
    Laux = np.zeros(32, np.float32)
    xs = np.zeros(32, np.float32)
    w = np.zeros(32, np.float32)
    scales = np.zeros(8, np.float32)
    mins = np.zeros(8, np.float32)
    for r in range(n):
        load_row(src, r, kind, table, buf)
        for b in range(k // 256):
            o = 176 * b
            _qk_block(buf, 256 * b, 31, np.float32(-0.5), 15, out, r, o, L, Laux, xs, w, scales,
                      mins, table)
            for j in range(32):                   # qh: bit 2c of weight 64c + j, 2c+1 of +32
                h = 0
                for c in range(4):
                    h |= ((L[64 * c + j] >> 4) & 1) << (2 * c)
                    h |= ((L[64 * c + 32 + j] >> 4) & 1) << (2 * c + 1)
                out[r, o + 16 + j] = h
            for c in range(4):
                for j in range(32):
                    out[r, o + 48 + 32 * c + j] = ((L[64 * c + j] & 15)
                                                   | ((L[64 * c + 32 + j] & 15) << 4))


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _qx_candidate(t, iscale, xs, w, wx, sumlx, suml2):
    """Candidate sums of make_qx_quants (nmax 32, rmse_type 1) for all 16 sub-blocks at once
    (lane s = sub-block s, iscale[s] its candidate): sumlx[s] = sum_i w x l, suml2[s] = sum_i
    w l l, each lane adding i = 0..15 in C's order. The lanes are independent, so the loop
    over them runs in parallel (SIMD / out of order) where C waits on one sum at a time.
    |iscale x| <= 33 here, where rounding by adding and taking away 1.5 * 2^23 in float32 is
    nearest_int exactly."""
    for s in range(16):
        sumlx[s] = 0
        suml2[s] = 0
    for i in range(16):
        for s in range(16):
            v = np.float32(iscale[t, s] * xs[i, s])
            fl = np.float32(np.float32(v + MAGIC) - MAGIC)
            fl = min(max(fl, np.float32(-32)), np.float32(31))
            sumlx[s] = np.float32(sumlx[s] + np.float32(wx[i, s] * fl))
            suml2[s] = np.float32(suml2[s] + np.float32(np.float32(w[i, s] * fl) * fl))


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _qx16(x, x0, L, scales, scratch):
    """make_qx_quants(16, 32, x + x0 + 16 s, L + 16 s, 1, NULL) for the 16 sub-blocks s of a
    super-block: codes in [0, 64) into L, scales[s]; scratch: the kernel's work arrays."""
    xs, w, wx, iscale, sumlx, suml2, best, best_is, mxs = scratch
    for s in range(16):
        amax = np.float32(0)
        mx = np.float32(0)
        for i in range(16):
            xi = x[x0 + 16 * s + i]
            xs[i, s] = xi
            if abs(xi) > amax:
                amax = abs(xi)
                mx = xi
            w[i, s] = np.float32(xi * xi)
            wx[i, s] = np.float32(w[i, s] * xi)
        mxs[s] = mx if amax >= EPS else np.float32(1)      # all-zero lanes: done below
        for t in range(19):                 # candidate 0: nmax; then nmax + 0.1 step
            step = t - 10 if t <= 9 else t - 9
            num = np.float32(32) if t == 0 else np.float32(np.float32(32) + np.float32(
                np.float32(0.1) * np.float32(step)))
            iscale[t, s] = np.float32(-num / mxs[s])
        if amax < EPS:
            mxs[s] = 0
    _qx_candidate(0, iscale, xs, w, wx, sumlx, suml2)
    for s in range(16):
        scales[s] = np.float32(sumlx[s] / suml2[s]) if suml2[s] != 0 else np.float32(0)
        best[s] = np.float32(scales[s] * sumlx[s])
        best_is[s] = iscale[0, s]
    for t in range(1, 19):
        _qx_candidate(t, iscale, xs, w, wx, sumlx, suml2)
        for s in range(16):
            if suml2[s] > 0 and np.float32(sumlx[s] * sumlx[s]) > np.float32(best[s] * suml2[s]):
                best_is[s] = iscale[t, s]
                scales[s] = np.float32(sumlx[s] / suml2[s])
                best[s] = np.float32(scales[s] * sumlx[s])
    for s in range(16):
        if mxs[s] == 0:
            scales[s] = 0
            for i in range(16):
                L[16 * s + i] = 0
            continue
        for i in range(16):
            q = _nearest(np.float32(best_is[s] * xs[i, s]))
            L[16 * s + i] = 32 + max(-32, min(31, q))


@njit(nogil=True, cache=True, error_model="numpy")
def q6_k_rows(src, kind, table, out):
    n, k = src.shape
    buf = np.empty(k, np.float32)
    L = np.zeros(256, np.uint8)
    scales = np.zeros(16, np.float32)
    scratch = (np.zeros((16, 16), np.float32), np.zeros((16, 16), np.float32),
          np.zeros((16, 16), np.float32), np.zeros((19, 16), np.float32),
          np.zeros(16, np.float32), np.zeros(16, np.float32), np.zeros(16, np.float32),
          np.zeros(16, np.float32), np.zeros(16, np.float32))
    for r in range(n):
        load_row(src, r, kind, table, buf)
        for b in range(k // 256):
            x0 = 256 * b
            o = 210 * b
            max_scale = np.float32(0)
            max_abs = np.float32(0)
            _qx16(buf, x0, L, scales, scratch)
            for s in range(16):
                if abs(scales[s]) > max_abs:
                    max_abs = abs(scales[s])
                    max_scale = scales[s]
            if max_abs < EPS:
                for i in range(210):
                    out[r, o + i] = 0
                continue
            iscale = np.float32(np.float32(-128) / max_scale)
            d = table[put_f16(out, r, o + 208, np.float32(np.float32(1) / iscale))]
            for s in range(16):
                sc = min(127, _nearest(np.float32(iscale * scales[s])))
                out[r, o + 192 + s] = np.uint8(sc & 0xFF)
                dd = np.float32(d * np.float32(np.int8(sc & 0xFF)))
                if dd == 0:
                    continue
                for i in range(16):
                    j = x0 + 16 * s + i
                    L[16 * s + i] = 32 + max(-32, min(31, _nearest(np.float32(buf[j] / dd))))
            for h in range(2):                     # each half: 128 weights, 64 ql, 32 qh bytes
                for j in range(32):
                    a = 128 * h + j
                    out[r, o + 64 * h + j] = (L[a] & 15) | ((L[a + 64] & 15) << 4)
                    out[r, o + 64 * h + 32 + j] = (L[a + 32] & 15) | ((L[a + 96] & 15) << 4)
                    out[r, o + 128 + 32 * h + j] = ((L[a] >> 4) | ((L[a + 32] >> 4) << 2)
                                                    | ((L[a + 64] >> 4) << 4)
                                                    | ((L[a + 96] >> 4) << 6))
