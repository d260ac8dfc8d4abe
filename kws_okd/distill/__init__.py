"""The shared distillation core. Knows nothing about audio or images: it sees a
student, a teacher, a batch ``(x, y)`` and an augmentation callable."""
from kws_okd.distill.losses import OBJECTIVES, build_objective, kd_loss, register_objective  # noqa: F401
