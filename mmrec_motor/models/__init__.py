"""Backbones, one file each. ``get_model(name)`` imports ``mmrec_motor.models.<name.lower()>`` and
returns the class named exactly ``name``, as MMRec's ``utils.get_model`` does."""
import importlib

from mmrec_motor.config import available_models


def get_model(name: str):
    if name not in available_models():
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    module = importlib.import_module(f"mmrec_motor.models.{name.lower()}")
    return getattr(module, name)
