"""Keras safety checks of model artifacts: nothing stored in an artifact runs code.

Before Keras sees a ``.keras`` archive, :func:`inspect_keras_file` checks its
members and scans its configuration (:func:`check_keras_config`): ``Lambda``
layers (which carry Python bytecode), objects from modules outside Keras and
custom classes not registered in this session are refused.  :func:`keras_load`
then loads it with ``safe_mode=True`` under a safe-mode scope that overrides
a global ``keras.config.enable_unsafe_deserialization()``.
"""

from __future__ import annotations

import contextlib
import json
import zipfile


from .artifact import KERAS_MEMBERS, ArtifactError


__all__ = ["check_keras_config", "inspect_keras_file", "load_plugins", "keras_load"]


#: Keras' markers for special values in a serialized config (tensors, arrays, bytes, ...).
_KERAS_MARKERS = frozenset({"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__",
                            "__typespec__", "__slice__", "__ellipsis__"})


def check_keras_config(node, filename):
    """Refuse Lambda layers, non-Keras modules and unregistered classes in a model config."""
    import keras
    if isinstance(node, list):
        for item in node:
            check_keras_config(item, filename)
        return
    if not isinstance(node, dict):
        return
    class_name = node.get("class_name")
    if isinstance(class_name, str):
        config = node.get("config")
        layer = node.get("name")
        if not isinstance(layer, str) and isinstance(config, dict):
            layer = config.get("name")
        label = f"{class_name} {layer!r}" if isinstance(layer, str) else class_name
        if class_name in ("Lambda", "__lambda__", "TFOpLambda"):
            raise ArtifactError(f"{filename}: the network contains a {label} layer, which "
                                f"stores Python code; remap does not load code from "
                                f"artifacts. Replace it with a registered layer")
        registered = node.get("registered_name")
        module = node.get("module")
        if isinstance(registered, str) and registered and registered != class_name:
            if registered not in keras.saving.get_custom_objects():
                raise ArtifactError(f"{filename}: the network uses the custom class "
                                    f"{registered!r}, which is not registered in this Python "
                                    f"session; install (or enable) the remap plugin that "
                                    f"provides it")
        elif module and not (module == "keras" or module.startswith("keras.")
                             or module == "builtins") and class_name not in _KERAS_MARKERS:
            raise ArtifactError(f"{filename}: {label} comes from module {module!r}, outside "
                                f"Keras and not registered; refusing to import it")
    for value in node.values():
        if isinstance(value, (dict, list)):
            check_keras_config(value, filename)


def inspect_keras_file(path):
    """Check a ``.keras`` archive's members and configuration before Keras opens it."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            if members != KERAS_MEMBERS:
                unexpected = sorted(members - KERAS_MEMBERS)
                missing = sorted(KERAS_MEMBERS - members)
                raise ArtifactError(
                    f"{path.name}: a .keras archive must hold exactly {sorted(KERAS_MEMBERS)};"
                    f"{f' unexpected members {unexpected}' if unexpected else ''}"
                    f"{f' missing members {missing}' if missing else ''}")
            config = json.loads(archive.read("config.json").decode("utf-8"))
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path.name}: not a valid .keras archive ({exc})") from None
    check_keras_config(config, path.name)


def load_plugins():
    """Register remap's layers and losses and import every installed plugin."""
    from .. import nn  # noqa: F401  registers remap's layers and losses with Keras
    from ..plugins import get_plugin_manager
    get_plugin_manager()


def keras_load(path):
    import keras
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # pragma: no cover - Keras internals moved
        SafeModeScope = None
    scope = SafeModeScope(True) if SafeModeScope is not None else contextlib.nullcontext()
    try:
        with scope:  # also overrides a global keras.config.enable_unsafe_deserialization()
            return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:
        raise ArtifactError(f"{path.name}: Keras refused to load the network "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:500]})") from exc
