"""One registry type for models, objectives, augmentations, callbacks and data kinds:
a dict from name to definition, filled by a decorator."""
from __future__ import annotations


class Registry(dict):
    def __init__(self, kind: str, name_attr: str = "registry_name"):
        super().__init__()
        self.kind = kind
        self.name_attr = name_attr

    def register(self, name: str):
        """Decorator: ``@REGISTRY.register("name")`` adds the class or function under ``name``."""
        def deco(obj):
            self[name] = obj
            try:
                setattr(obj, self.name_attr, name)
            except (AttributeError, TypeError):
                pass
            return obj
        return deco
