"""``kws-okd keywords``: the command's options (the work is in kws_okd/keywords/build.py)."""
from __future__ import annotations

import argparse


def _keywords(a):
    from kws_okd.keywords.build import build_keywords
    facts = build_keywords(a.words, a.out, real_dev=a.real_dev,
                           unknown_words=[w for w in (a.unknown or "").split(",") if w.strip()],
                           size=a.size, seed=a.seed, method=a.method, student=a.student,
                           families=a.families.split(",") if a.families else None,
                           long_audio_minutes=a.long_audio_minutes, extra_overrides=a.overrides,
                           card_page=a.card_page)
    print(f"detector for {', '.join(facts['keywords'])} written to {a.out} (card: {a.out}/card.md)")


def add_keywords_command(sub) -> None:
    c = sub.add_parser("keywords", help="train, distil and export a detector for your own words")
    c.add_argument("words", help="comma-separated words or short phrases, e.g. \"marvin,sheila,lights on\"")
    c.add_argument("--out", required=True, help="folder for model.pt, the exports and card.md")
    c.add_argument("--real-dev", help="folder of your recordings, <word>/*.wav (other folders: speech that "
                                      "must not fire); recall on them goes into the card")
    c.add_argument("--unknown", help="comma-separated words of your own that must not fire")
    c.add_argument("--size", default="default", choices=["tiny", "default", "large"], help="corpus size")
    c.add_argument("--families", help="synthesiser families (default: the recipe's six)")
    c.add_argument("--method", default="okd_talk",
                   help="student method (recipes/kws/method or distill); okd_talk: real-audio OKD with people talking")
    c.add_argument("--student", default="bcresnet2_20ms")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--long-audio-minutes", type=float, default=8.0,
                   help="length of the synthetic recordings thresholds are chosen on")
    c.add_argument("--card-page", help="also write the card's first part to this page (the docs' example)")
    c.add_argument("overrides", nargs="*", help="more Hydra overrides for every recipe, e.g. steps=800")
    c.set_defaults(fn=_keywords)
