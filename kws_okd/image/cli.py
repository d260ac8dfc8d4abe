"""Image-branch sub-commands for ``kws-okd`` (wired in by ``kws_okd/cli.py``)."""
from __future__ import annotations


def _digits_domains(a):
    from kws_okd.data.digits import DigitsSpec, build_digits
    kw = dict(seed=a.seed, image_size=a.size, per_domain=a.per_domain)
    if a.domains:
        kw["domains"] = tuple(a.domains.split(","))
    root = build_digits(a.out or f"data/digits_domains/seed{a.seed}_{a.size}px", DigitsSpec(**kw),
                        progress=True)
    print(f"digit domains ready: {root} (previews in {root / '_previews'})")


def _image_lodo(a):
    from kws_okd.image.lodo import IMAGE_RECIPES, QUICK, QUICK_STUDENT, run_lodo
    overrides = (QUICK if a.quick else []) + list(a.overrides)
    result = run_lodo(overrides, domains=a.domains.split(",") if a.domains else None,
                      methods=a.methods.split(","), seeds=[int(s) for s in a.seeds.split(",")],
                      student=a.student or (QUICK_STUDENT if a.quick else "mobilenetv3_small"),
                      recipe_dir=a.recipe_dir or IMAGE_RECIPES, out=a.out)
    from kws_okd.image.lodo import render
    print(render(result))


def add_image_commands(sub) -> None:
    """Add ``digits-domains`` and ``image-lodo`` to an argparse sub-parser set."""
    c = sub.add_parser("digits-domains", help="render the embedded digit image domains")
    c.add_argument("--out", help="folder (default data/digits_domains/seed<seed>_<size>px)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--size", type=int, default=32, help="image side in pixels")
    c.add_argument("--domains", help="comma-separated, from clean,mnistm,thick,inverted,degraded,jitter")
    c.add_argument("--per-domain", type=int, help="digits per domain (default: an equal share)")
    c.set_defaults(fn=_digits_domains)

    c = sub.add_parser("image-lodo", help="leave-one-domain-out: teacher + ERM/KD/OKD students "
                                          "per held-out image domain, one table per domain")
    c.add_argument("overrides", nargs="*", help="recipe overrides, e.g. data=folder "
                                                "data.root=/data/PACS data.dataset=pacs epochs=30")
    c.add_argument("--quick", action="store_true", help="few-minute CPU setting (4 digit domains, "
                                                         "16 px, small teacher, small_cnn student, 8 epochs)")
    c.add_argument("--domains", help="comma-separated held-out domains (default: all)")
    c.add_argument("--methods", default="erm,kd,okd")
    c.add_argument("--seeds", default="0")
    c.add_argument("--student", help="default mobilenetv3_small (small_cnn with --quick)")
    c.add_argument("--recipe-dir", help="default recipes/image")
    c.add_argument("--out", help="default <results_dir>/lodo_<data kind>")
    c.set_defaults(fn=_image_lodo)
