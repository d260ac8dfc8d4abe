"""The shared distillation core. Knows nothing about audio or images: it sees a
student, a teacher, a batch ``(x, y)`` and an augmentation callable."""
from kws_okd.distill.losses import OBJECTIVES, build_objective, kd_loss, register_objective  # noqa: F401
from kws_okd.distill.averaging import (  # noqa: F401
    ExponentialMean, LossValley, RunningMean, find_valley, recompute_bn)
from kws_okd.distill.hard import HARD, build_augmenter, register_augmenter_factory  # noqa: F401
