"""llama.cpp's own importance-matrix accumulation, reproduced through llama-cpp-python: a
scheduler eval callback (cb_eval) that answers and accumulates exactly as llama-imatrix's
IMatrixCollector::collect_imatrix does (tools/imatrix/imatrix.cpp, llama.cpp 0.3.36), in float32,
token by token, on the matmul inputs llama.cpp itself computes. llama-imatrix itself is not in the
wheel, so this is the closest independent oracle."""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from tinyconvert.checks.llamacpp import open_llama


class GgmlTensor(ctypes.Structure):
    pass


GgmlTensor._fields_ = [          # ggml.h's struct ggml_tensor (GGML_MAX_SRC 10, 64-byte names)
    ("type", ctypes.c_int32), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
    ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int32), ("op_params", ctypes.c_int32 * 16),
    ("flags", ctypes.c_int32), ("src", ctypes.POINTER(GgmlTensor) * 10),
    ("view_src", ctypes.POINTER(GgmlTensor)), ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64), ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8)]


def _ops() -> tuple[int, int]:
    """GGML_OP_MUL_MAT and GGML_OP_MUL_MAT_ID, looked up by name in this build."""
    import llama_cpp
    from llama_cpp._ctypes_extensions import load_shared_library
    base = load_shared_library("ggml-base", Path(llama_cpp.__file__).parent / "lib")
    base.ggml_op_name.restype, base.ggml_op_name.argtypes = ctypes.c_char_p, [ctypes.c_int]
    names = {base.ggml_op_name(i): i for i in range(100)}
    return names[b"MUL_MAT"], names[b"MUL_MAT_ID"]


def _view(t: GgmlTensor, dtype) -> np.ndarray:
    """numpy shape (ne3, ne2, ne1, ne0) over host memory, through the tensor's strides."""
    ne, nb = list(t.ne), list(t.nb)
    extent = sum((n - 1) * s for n, s in zip(ne, nb)) + np.dtype(dtype).itemsize
    buf = (ctypes.c_byte * extent).from_address(t.data)
    return np.ndarray(tuple(reversed(ne)), dtype=dtype, buffer=buf,
                      strides=tuple(reversed(nb)))


class Collector:
    def __init__(self, process_output: bool = False):
        self.mul_mat, self.mul_mat_id = _ops()
        self.process_output = process_output
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}

    def __call__(self, t_ptr, ask, _user) -> bool:
        t = ctypes.cast(t_ptr, ctypes.POINTER(GgmlTensor)).contents
        if t.op not in (self.mul_mat, self.mul_mat_id):
            return not ask
        src0, src1 = t.src[0].contents, t.src[1].contents
        raw = src0.name.decode()
        name = raw.split("#")[1] if "#" in raw else raw     # CUDA0#blk.0.attn_k.weight#0
        if ask:
            return (t.op == self.mul_mat_id or src1.ne[1] >= 16 and src1.type == 0
                    and (name.startswith("blk.")
                         or (self.process_output and name == "output.weight")))
        if t.op == self.mul_mat_id:
            self._mul_mat_id(name, src0, src1, t.src[2].contents)
        else:
            self._mul_mat(name, src0, src1)
        return True

    def _entry(self, name: str, n_mat: int, n_cols: int):
        if name not in self.sums:
            self.sums[name] = np.zeros((n_mat, n_cols), dtype=np.float32)
            self.counts[name] = np.zeros(n_mat, dtype=np.int64)
        return self.sums[name], self.counts[name]

    def _mul_mat(self, name: str, src0: GgmlTensor, src1: GgmlTensor) -> None:
        """Dense: n_mat * ne0 values side by side and one count (as the file stores them)."""
        n_mat, ne0 = src0.ne[2] * src0.ne[3], src1.ne[0]
        acc, counts = self._entry(name, 1, n_mat * ne0)
        x = _view(src1, np.float32)
        for i3 in range(src1.ne[3]):
            for i2 in range(src1.ne[2]):
                mat = (i3 % src0.ne[3]) * src0.ne[2] + (i2 % src0.ne[2])
                for row in x[i3, i2]:             # float32, one token after another
                    acc[0, mat * ne0:(mat + 1) * ne0] += row * row
        counts[0] += (src1.ne[1] * src1.ne[2] * src1.ne[3]) // n_mat

    def _mul_mat_id(self, name: str, src0: GgmlTensor, src1: GgmlTensor,
                    ids: GgmlTensor) -> None:
        n_as = src0.ne[2]
        acc, counts = self._entry(name, n_as, src1.ne[0])
        x, chosen = _view(src1, np.float32)[0], _view(ids, np.int32)[0, 0]   # [tok, slot, col]
        for idx in range(ids.ne[0]):
            for row in range(src1.ne[2]):
                ex = int(chosen[row, idx])
                v = x[row, idx % src1.ne[1]]
                acc[ex] += v * v
                counts[ex] += 1


def llamacpp_chunks(gguf_path: Path, text: str, chunk_size: int, n_chunks: int) -> list[list[int]]:
    """compute_imatrix's chunks from llama.cpp's own tokenizer (add_special, no parse_special):
    the first token of each chunk replaced by BOS when the vocabulary adds one."""
    llm = open_llama(gguf_path, vocab_only=True, verbose=False)
    ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    bos = llm.token_bos() if llm.tokenize(b"", add_bos=True, special=False) else None
    llm.close()
    out = [ids[c * chunk_size:(c + 1) * chunk_size] for c in range(n_chunks)]
    return [[bos, *c[1:]] if bos is not None else c for c in out]


def llamacpp_imatrix(gguf_path: Path, chunks: list[list[int]], *,
                     process_output: bool = False) -> Collector:
    """Each chunk (BOS already in front) decoded as its own sequence at positions 0.., every
    token asking for logits, the KV cache cleared in between, as compute_imatrix does."""
    import llama_cpp as L
    T = len(chunks[0])
    llm = open_llama(gguf_path, n_ctx=T, n_batch=T, verbose=False)
    col = Collector(process_output)
    cb = L.ggml_backend_sched_eval_callback(col)
    params = L.llama_context_default_params()
    params.n_ctx = params.n_batch = params.n_ubatch = T
    params.n_threads = params.n_threads_batch = 2
    params.cb_eval, params.cb_eval_user_data = cb, None
    ctx = L.llama_init_from_model(llm.model, params)
    try:
        for ids in chunks:
            L.llama_memory_clear(L.llama_get_memory(ctx), True)
            batch = L.llama_batch_init(T, 0, 1)
            for k, tok in enumerate(ids):
                batch.token[k], batch.pos[k], batch.n_seq_id[k] = tok, k, 1
                batch.seq_id[k][0], batch.logits[k] = 0, 1
            batch.n_tokens = T
            rc = L.llama_decode(ctx, batch)
            L.llama_batch_free(batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with {rc}")
    finally:
        L.llama_free(ctx)
        llm.close()
    return col


def llamacpp_quantize_imatrix(src: Path, dst: Path, ftype: int, vectors: dict[str, np.ndarray],
                              keys: list[tuple[str, object]] = (), *, threads: int = 2) -> int:
    """llama_model_quantize with params.imatrix (the NULL-terminated {name, data, size} array,
    normalised float32 vectors, as llama-quantize passes them) and the quantize.imatrix.* keys
    as the kv_overrides llama-quantize adds (str or int values). Returns llama.cpp's rc (1: it
    threw, e.g. a required matrix is missing)."""
    import llama_cpp as L
    keep = [np.ascontiguousarray(v, dtype=np.float32) for v in vectors.values()]
    data = (L.llama_model_imatrix_data * (len(keep) + 1))()
    for slot, (name, v) in zip(data, zip(vectors, keep)):
        slot.name = name.encode()
        slot.data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        slot.size = v.size
    kvs = (L.llama_model_kv_override * (len(keys) + 1))()
    for kv, (key, value) in zip(kvs, keys):
        kv.key = key.encode()
        if isinstance(value, str):
            kv.tag, kv.value.val_str = L.LLAMA_KV_OVERRIDE_TYPE_STR, value.encode()[:127]
        else:
            kv.tag, kv.value.val_i64 = L.LLAMA_KV_OVERRIDE_TYPE_INT, int(value)
    params = L.llama_model_quantize_default_params()
    params.ftype, params.nthread = ftype, threads
    params.imatrix = data
    if keys:
        params.kv_overrides = kvs
    return L.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))


def ggml_write_imatrix(path: Path, entries: dict[str, tuple[np.ndarray, np.ndarray]],
                       datasets: list[str], chunk_count: int, chunk_size: int) -> None:
    """An imatrix GGUF written by ggml's own gguf writer (libggml-base), in the calls
    IMatrixCollector::save_imatrix makes: the keys, then per sorted entry the F32 tensors
    <name>.in_sum2 [n_cols, n_mat] and <name>.counts [1, n_mat]."""
    import llama_cpp
    from llama_cpp._ctypes_extensions import load_shared_library
    lib = load_shared_library("ggml-base", Path(llama_cpp.__file__).parent / "lib")

    class InitParams(ctypes.Structure):
        _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p),
                    ("no_alloc", ctypes.c_bool)]
    P, S = ctypes.c_void_p, ctypes.c_char_p
    for fn, res, args in [("ggml_init", P, [InitParams]), ("ggml_free", None, [P]),
                          ("ggml_new_tensor_2d", ctypes.POINTER(GgmlTensor),
                           [P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]),
                          ("ggml_set_name", P, [ctypes.POINTER(GgmlTensor), S]),
                          ("gguf_init_empty", P, []), ("gguf_free", None, [P]),
                          ("gguf_set_val_str", None, [P, S, S]),
                          ("gguf_set_val_u32", None, [P, S, ctypes.c_uint32]),
                          ("gguf_set_arr_str", None, [P, S, ctypes.POINTER(S), ctypes.c_size_t]),
                          ("gguf_add_tensor", None, [P, ctypes.POINTER(GgmlTensor)]),
                          ("gguf_write_to_file", ctypes.c_bool, [P, S, ctypes.c_bool])]:
        getattr(lib, fn).restype, getattr(lib, fn).argtypes = res, args
    size = sum(s.nbytes + c.nbytes + 2048 for s, c in entries.values()) + 4096
    ctx, g = lib.ggml_init(InitParams(size, None, False)), lib.gguf_init_empty()
    lib.gguf_set_val_str(g, b"general.type", b"imatrix")
    names = (S * len(datasets))(*[d.encode() for d in datasets])
    lib.gguf_set_arr_str(g, b"imatrix.datasets", names, len(datasets))
    lib.gguf_set_val_u32(g, b"imatrix.chunk_count", chunk_count)
    lib.gguf_set_val_u32(g, b"imatrix.chunk_size", chunk_size)
    for name in sorted(entries):
        sums, counts = entries[name]
        for suffix, arr, ne in ((".in_sum2", sums, (sums.shape[1], sums.shape[0])),
                                (".counts", counts, (1, counts.size))):
            t = lib.ggml_new_tensor_2d(ctx, 0, *ne)
            lib.ggml_set_name(t, (name + suffix).encode())
            data = np.ascontiguousarray(arr, dtype=np.float32)
            ctypes.memmove(t.contents.data, data.ctypes.data, data.nbytes)
            lib.gguf_add_tensor(g, t)
    ok = lib.gguf_write_to_file(g, str(path).encode(), False)
    lib.gguf_free(g)
    lib.ggml_free(ctx)
    if not ok:
        raise RuntimeError("gguf_write_to_file failed")
