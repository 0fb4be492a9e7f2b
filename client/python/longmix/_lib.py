"""The C library (liblongmix) through ctypes: loading, prototypes, the options struct, errors."""
import ctypes
import ctypes.util
import os

LMX_ERANGE = -7
_ERROR_NAMES = {0: "LMX_OK", -1: "LMX_EINVAL", -2: "LMX_ENOMEM", -3: "LMX_EIO", -4: "LMX_EFORMAT",
                -5: "LMX_ECHECKSUM", -6: "LMX_ENOTFOUND", -7: "LMX_ERANGE", -8: "LMX_EUNSUPPORTED",
                -9: "LMX_ENETWORK", -10: "LMX_ETIMEOUT", -11: "LMX_EHTTP", -12: "LMX_EAUTH", -13: "LMX_EINTERNAL"}


class LongmixError(Exception):
    """An error from liblongmix: .code (negative LMX_E* value), .name ("LMX_ECHECKSUM"), .message."""

    def __init__(self, code, message):
        self.code = code
        self.name = _ERROR_NAMES.get(code, f"LMX_E{code}")
        self.message = message
        super().__init__(f"{message} [{self.name}]")

    def __reduce__(self):  # picklable, so it crosses from DataLoader workers intact
        return (LongmixError, (self.code, self.message))


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 512)]


class _Options(ctypes.Structure):  # mirrors lmx_client_options in longmix.h, field for field, in order
    _fields_ = [("urls", ctypes.c_char_p), ("plan", ctypes.c_char_p), ("rank", ctypes.c_uint32),
                ("world", ctypes.c_uint32), ("token", ctypes.c_char_p), ("start_step", ctypes.c_uint64),
                ("prefetch", ctypes.c_uint32), ("timeout_ms", ctypes.c_uint32), ("retries", ctypes.c_uint32),
                ("no_zstd", ctypes.c_int), ("deadline_ms", ctypes.c_uint32),
                ("max_batch_bytes", ctypes.c_uint64), ("cp_rank", ctypes.c_uint32), ("cp_size", ctypes.c_uint32),
                ("cp_layout", ctypes.c_uint32)]


class _SpanInfo(ctypes.Structure):
    _fields_ = [("doc", ctypes.c_uint64), ("offset", ctypes.c_uint64), ("start", ctypes.c_uint32),
                ("length", ctypes.c_uint32), ("domain", ctypes.c_char_p)]


def _candidates():
    """Where liblongmix may be, in order: $LONGMIX_LIBRARY; inside the package (pip install copies
    it there); the prefix's library folder when `cmake --install` put the package there; the
    loader's path."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    if os.environ.get("LONGMIX_LIBRARY"):
        out.append(os.environ["LONGMIX_LIBRARY"])
    dirs = [here]
    try:  # written by cmake --install (client/CMakeLists.txt)
        from ._install import LIBDIR
        dirs.append(os.path.normpath(os.path.join(here, LIBDIR)))
    except ImportError:
        pass
    for d in dirs:
        out += [os.path.join(d, "liblongmix.so.0"), os.path.join(d, "liblongmix.so")]
    return out + ["liblongmix.so.0", "liblongmix.so"]


def _load():
    candidates = _candidates()
    found = ctypes.util.find_library("longmix")
    if found:
        candidates.append(found)
    errors = []
    for path in candidates:
        if os.sep in path and not os.path.exists(path):
            errors.append(f"{path}: no such file")
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(str(e))
    raise ImportError("longmix: cannot load liblongmix (set LONGMIX_LIBRARY to its path): " + "; ".join(errors))


library = _load()
_L = library
_P, _E = ctypes.c_void_p, ctypes.POINTER(_Error)
for _name, _res, _args in [
        ("lmx_version", ctypes.c_char_p, []),
        ("lmx_strerror", ctypes.c_char_p, [ctypes.c_int]),
        ("lmx_client_options_init", None, [ctypes.POINTER(_Options)]),
        ("lmx_client_open", ctypes.c_int, [ctypes.POINTER(_Options), ctypes.POINTER(_P), _E]),
        ("lmx_client_close", None, [_P]),
        ("lmx_client_next", ctypes.c_int, [_P, ctypes.POINTER(_P), _E]),
        ("lmx_client_fetch", ctypes.c_int, [_P, ctypes.c_uint64, ctypes.POINTER(_P), _E]),
        ("lmx_client_fetch_into", ctypes.c_int, [_P, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t,
                                                 ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(_P), _E]),
        ("lmx_client_seek", ctypes.c_int, [_P, ctypes.c_uint64]),
        ("lmx_client_position", ctypes.c_uint64, [_P]),
        ("lmx_batch_free", None, [_P]),
        ("lmx_batch_plan_id", ctypes.c_char_p, [_P]),
        ("lmx_batch_step", ctypes.c_uint64, [_P]),
        ("lmx_batch_rank", ctypes.c_uint32, [_P]),
        ("lmx_batch_world", ctypes.c_uint32, [_P]),
        ("lmx_batch_n_seqs", ctypes.c_uint32, [_P]),
        ("lmx_batch_seq_len", ctypes.c_uint32, [_P]),
        ("lmx_batch_token_bytes", ctypes.c_uint32, [_P]),
        ("lmx_batch_tokens", ctypes.c_void_p, [_P]),
        ("lmx_batch_cp_rank", ctypes.c_uint32, [_P]),
        ("lmx_batch_cp_size", ctypes.c_uint32, [_P]),
        ("lmx_batch_slice_len", ctypes.c_uint32, [_P]),
        ("lmx_batch_labels", ctypes.c_void_p, [_P]),
        ("lmx_batch_position_ids", ctypes.c_void_p, [_P]),
        ("lmx_batch_ignore_index", ctypes.c_int32, [_P]),
        ("lmx_batch_cp_layout", ctypes.c_uint32, [_P]),
        ("lmx_batch_padded", ctypes.c_int, [_P]),
        ("lmx_get", ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32,
                                   ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t), _E]),
        ("lmx_free", None, [ctypes.c_void_p]),
        ("lmx_batch_next_token", ctypes.c_uint32, [_P, ctypes.c_uint32]),
        ("lmx_batch_n_spans", ctypes.c_uint32, [_P, ctypes.c_uint32]),
        ("lmx_batch_span", ctypes.c_int, [_P, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(_SpanInfo)]),
        ("lmx_batch_cu_seqlens", ctypes.c_uint32, [_P, ctypes.c_uint32, ctypes.POINTER(ctypes.c_int32),
                                                   ctypes.c_uint32]),
        ("lmx_batch_cu_seqlens_real", ctypes.c_uint32, [_P, ctypes.c_uint32, ctypes.POINTER(ctypes.c_int32),
                                                        ctypes.c_uint32]),
        ("lmx_batch_body", ctypes.c_void_p, [_P, ctypes.POINTER(ctypes.c_size_t)])]:
    _f = getattr(_L, _name)
    _f.restype = _res
    _f.argtypes = _args


def version():
    return _L.lmx_version().decode()


def _raise(rc, err):
    msg = err.message.decode("utf-8", "replace") or _L.lmx_strerror(rc).decode()
    raise LongmixError(rc, msg)


