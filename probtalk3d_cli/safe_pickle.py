"""A restricted unpickler for FLAME / legacy `.pkl` files: numpy arrays in, nothing executed.

Only an allow-list of constructors is admitted. chumpy objects (FLAME 2020 `generic_model.pkl`) and scipy sparse
matrices become plain numpy arrays; torch tensors pickled by `torch.save`'s legacy path (the official
`templates_mead_*.pkl`) become numpy arrays too. Everything else (os.system, builtins.eval, ...) is refused.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


class UnsafePickleError(ValueError):
    """The pickle asked for a constructor that is not on the allow-list."""


class _Captured:
    """Stand-in for an object of a foreign library: records its state so it can be turned into numpy later."""

    kind = "object"

    def __init__(self, *args, **kwargs):
        self.args = args
        self.state: Any = None

    def __setstate__(self, state):
        self.state = state


class _Chumpy(_Captured):
    kind = "chumpy"


class _Sparse(_Captured):
    kind = "sparse"


def _reconstructor(cls, base, state):
    # copyreg._reconstructor(cls, object, None): create an empty instance of an allowed stand-in class.
    if not (isinstance(cls, type) and issubclass(cls, _Captured)):
        raise UnsafePickleError(f"refusing to reconstruct {cls!r}")
    return cls()


def _numpy_scalar(dtype, data=None):  # numpy.core.multiarray.scalar
    return np.frombuffer(data, dtype=dtype)[0] if data is not None else dtype.type(0)


def _torch_load_from_bytes(data: bytes):
    # Legacy torch pickles wrap each storage in a nested torch.save payload; read it with torch's own
    # weights-only loader, which executes nothing.
    import torch

    from probtalk3d_cli.checkpoint import unsafe_global

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = unsafe_global(exc)
        if refused is None:
            raise
        raise UnsafePickleError(f"refusing to load '{refused}' from an embedded torch payload (not on the "
                                "allow-list)") from None


def _torch_rebuild_tensor(*args):
    import torch._utils

    return torch._utils._rebuild_tensor_v2(*args)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allow_torch: bool = False):
        super().__init__(file, encoding="latin1")
        self.allow_torch = allow_torch

    def find_class(self, module: str, name: str):
        full = f"{module}.{name}"
        if module == "numpy.core.multiarray" or module == "numpy._core.multiarray":
            if name == "_reconstruct":
                return _np_reconstruct
            if name == "scalar":
                return _numpy_scalar
        if module in ("numpy", "numpy.core.numeric", "numpy._core.numeric") and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return lambda buf, dtype, shape, order: np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)
        if module == "_codecs" and name == "encode":
            # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1"): pure data
            import codecs

            return lambda text, encoding="utf-8": codecs.encode(text, encoding)
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _reconstructor
        if module == "__builtin__" and name == "object" or module == "builtins" and name == "object":
            return object
        if module.startswith("chumpy"):
            return _Chumpy
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix", "coo_matrix"):
            return _Sparse
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if self.allow_torch:
            if module == "torch._utils" and name == "_rebuild_tensor_v2":
                return _torch_rebuild_tensor
            if module == "torch.storage" and name == "_load_from_bytes":
                return _torch_load_from_bytes
        raise UnsafePickleError(f"refusing to load '{full}' from a pickle (not on the allow-list)")

    def persistent_load(self, pid):
        raise UnsafePickleError("persistent ids are not supported by the restricted loader")


def _to_numpy(obj: Any) -> Any:
    """Replace captured chumpy/sparse stand-ins by numpy arrays, recursively."""
    if isinstance(obj, _Chumpy):
        st = obj.state
        if isinstance(st, dict) and "x" in st:
            return np.asarray(_to_numpy(st["x"]))
        raise UnsafePickleError("a chumpy object without a plain value ('x') cannot be converted")
    if isinstance(obj, _Sparse):
        st = obj.state
        if not isinstance(st, dict):
            raise UnsafePickleError("a scipy sparse matrix without state cannot be converted")
        shape = tuple(st.get("_shape") or st.get("shape"))
        fmt = st.get("format") or ("csc" if "indptr" in st else "coo")
        out = np.zeros(shape, dtype=np.asarray(st["data"]).dtype)
        data, indices, indptr = (np.asarray(st[k]) for k in ("data", "indices", "indptr"))
        for j in range(len(indptr) - 1):
            sl = slice(indptr[j], indptr[j + 1])
            if fmt == "csc":
                out[indices[sl], j] = data[sl]
            else:
                out[j, indices[sl]] = data[sl]
        return out
    if type(obj).__module__.startswith("torch") and hasattr(obj, "numpy"):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_numpy(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_numpy(v) for v in obj)
    return obj


def safe_load_pickle_bytes(data: bytes, what: str = "pickle", allow_torch: bool = False) -> Any:
    """Unpickle `data` with the allow-list; `allow_torch` admits legacy torch tensors (read weights-only)."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), allow_torch=allow_torch).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{what}: {exc}; only plain numpy/FLAME data is accepted") from None
    except Exception as exc:  # noqa: BLE001 - damaged pickles raise KeyError, struct.error, ... as well
        raise ValueError(f"{what} is not a readable pickle ({type(exc).__name__}: {exc})") from None
    return _to_numpy(obj)


def safe_load_pickle(path: str | Path, what: str = "pickle file", allow_torch: bool = False) -> Any:
    """Load a `.pkl` file with the restricted unpickler and return numpy-only content.

    Raises:
        FileNotFoundError: missing file. UnsafePickleError: disallowed constructor. ValueError: unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {p} does not exist")
    if p.is_dir():
        raise ValueError(f"{what} {p} is a directory, not a .pkl file")
    return safe_load_pickle_bytes(p.read_bytes(), what=f"{what} {p}", allow_torch=allow_torch)
