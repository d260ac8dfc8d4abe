from kws_okd.models.registry import MODELS, build_model, count_macs, count_params, register_model  # noqa: F401
from kws_okd.models import bcresnet, dscnn, image, raw_cnn, resnet, speech_embedding  # noqa: F401  (registration)
