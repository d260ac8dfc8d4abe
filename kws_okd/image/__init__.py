"""The image branch: the ``digits-domains`` and ``image-lodo`` sub-commands
(:mod:`kws_okd.image.cli`) and the leave-one-domain-out study (:mod:`kws_okd.image.lodo`).

Kept apart from the speech code: the distillation core (:mod:`kws_okd.distill`) imports
neither audio nor image code, and the image datasets, augmentations and networks register
themselves from :mod:`kws_okd.data.images`, :mod:`kws_okd.augment.image` and
:mod:`kws_okd.models.image`. Importing this package is cheap; :mod:`kws_okd.image.lodo`
pulls in the trainer.
"""
