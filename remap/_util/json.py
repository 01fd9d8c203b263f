"""JSON coercion shared by remap's writers (artifact manifests, data-set manifests, run records).

`jsonable` turns a value built from Python and NumPy objects into plain JSON
values (a deep copy), naming the place of anything that cannot be stored;
`json_default` is the same conversion for the scalars and arrays as a
``default=`` hook of `json.dumps`, for writers that must keep the exact text
`json.dumps` gives (hashes of configurations).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from typing import Any, Callable

import astropy.units as u
import numpy as np

__all__ = ["jsonable", "json_default"]


def json_default(obj: Any) -> Any:
    """A ``default=`` hook for `json.dumps`: NumPy scalars and arrays, paths.

    Raises
    ------
    TypeError
        Any other object, as `json.dumps` does.

    Examples
    --------
    >>> import json, numpy as np
    >>> json.dumps({"n": np.int64(3), "x": np.arange(2)}, default=json_default)
    '{"n": 3, "x": [0, 1]}'
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def jsonable(obj: Any, where: str = "", *, what: str = "JSON",
             error: type[Exception] = TypeError,
             default: Callable[[Any], Any] | None = None) -> Any:
    """A JSON-compatible copy of ``obj``.

    Booleans, strings and None are kept; integers (NumPy's too) become `int`,
    real numbers `float` (non-finite ones None, which JSON has no other way to
    write); arrays, tuples and lists become lists; paths strings; dataclass
    instances dicts; a `~astropy.units.Quantity` ``{"value": ..., "unit":
    ...}`` and a unit its string.

    Parameters
    ----------
    obj : object
    where : str
        Where ``obj`` sits (``"beams.A"``), for the error messages.
    what : str
        What is being written (``"manifest"``), for the error messages:
        ``"{what} keys must be strings; ..."``, ``"{what} value at ... cannot be
        stored as JSON: ..."``.
    error : type
        Exception class raised for what cannot be stored.
    default : callable, optional
        Called with any other object; its result is coerced in turn.
        Default: raise.

    Returns
    -------
    value : None, bool, int, float, str, list or dict

    Raises
    ------
    TypeError (or ``error``)
        A dict key that is not a string, or an object of another type (without
        ``default``).

    Examples
    --------
    >>> import numpy as np
    >>> jsonable({"a": np.float32(0.5), "b": (1, float("nan"))})
    {'a': 0.5, 'b': [1, None]}
    """
    def at(sub):
        return sub if where == "" else (f"{where}{sub}" if sub.startswith("[")
                                        else f"{where}.{sub}")

    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, u.Quantity):
        return {"value": jsonable(obj.value, where, what=what, error=error, default=default),
                "unit": obj.unit.to_string()}
    if isinstance(obj, u.UnitBase):
        return obj.to_string()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), where, what=what, error=error, default=default)
    if isinstance(obj, np.generic):
        return jsonable(obj.item(), where, what=what, error=error, default=default)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj), where, what=what, error=error, default=default)
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise error(f"{what} keys must be strings; received {key!r} at "
                            f"{where or 'the top level'}")
            out[key] = jsonable(value, at(key), what=what, error=error, default=default)
        return out
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, at(f"[{i}]"), what=what, error=error, default=default)
                for i, v in enumerate(obj)]
    if default is not None:
        return jsonable(default(obj), where, what=what, error=error)
    raise error(f"{what} value at {where or 'the top level'} is a {type(obj).__name__}, "
                f"which cannot be stored as JSON: {obj!r}")
