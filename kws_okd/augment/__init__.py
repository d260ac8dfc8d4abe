from kws_okd.augment.registry import AUGMENTATIONS, build_augmentation, register_augmentation  # noqa: F401
from kws_okd.augment import disruptive  # noqa: F401  (registration)
from kws_okd.augment import channel, noise, policy, real_audio, room  # noqa: F401  (registration)
from kws_okd.augment import image, learnable, learnable_image  # noqa: F401  (registration)
