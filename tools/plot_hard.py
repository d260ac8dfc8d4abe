"""Clean versus HARD-augmented inputs, as PNGs.

    python tools/plot_hard.py --run results/compare/synth_default/e3/hard/seed0 --out /tmp/hard_plots
    python tools/plot_hard.py --out /tmp/hard_plots --image photo.png   # the image augmenter

Speech: builds the augmenter of the run's ``config.yaml`` (``distill.augmenter``), loads
the state its newest checkpoint saved (``save/CKPT*/hard_augmenter.ckpt``; the untrained
augmenter when there is none or with ``--untrained``), and plots log-mel spectrograms of
``--n`` validation clips next to two augmented draws each. Image: applies
``learnable_stn_color`` (untrained, or ``--image-state`` a saved state dict) to the images given.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kws_okd.augment import build_augmentation  # noqa: E402
from kws_okd.augment import learnable, learnable_image  # noqa: E402,F401
from kws_okd.utils.atomic import atomic_path  # noqa: E402


def newest_state(run: Path):
    ckpts = sorted((run / "save").glob("CKPT*/hard_augmenter.ckpt"), key=lambda p: p.stat().st_mtime)
    return torch.load(ckpts[-1], map_location="cpu", weights_only=True) if ckpts else None


def save_fig(fig, path: Path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_speech(run: Path, out: Path, n: int, untrained: bool, manifest: str | None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from omegaconf import OmegaConf

    from kws_okd.audio.features import build_frontend
    from kws_okd.data.registry import load_dataset

    cfg = OmegaConf.load(run / "config.yaml")
    aug = build_augmentation(OmegaConf.to_container(cfg.distill.augmenter, resolve=True))
    state = None if untrained else newest_state(run)
    if state is not None:
        aug.load_state_dict(state)
    aug.train()  # draw random strengths as in training
    ds = load_dataset(Path(manifest or Path(cfg.data.manifest_dir) / "valid.csv"))
    idx = torch.linspace(0, len(ds) - 1, n).long()
    x = ds.waves[idx]
    torch.manual_seed(0)
    with torch.no_grad():
        draws = [aug(x), aug(x)]
    mel = build_frontend("logmel", n_mels=40, normalize="none")  # absolute levels: gain/noise stay visible
    fig, axes = plt.subplots(n, 3, figsize=(9, 2.0 * n), squeeze=False)
    for i in range(n):
        for j, (title, wav) in enumerate([("clean", x), ("HARD draw 1", draws[0]), ("HARD draw 2", draws[1])]):
            with torch.no_grad():
                spec = mel(wav[i:i + 1])[0]
            ax = axes[i][j]
            ax.imshow(spec.numpy(), origin="lower", aspect="auto", cmap="magma")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(title)
            if j == 0:
                ax.set_ylabel(ds.classes[int(ds.labels[idx[i]])] if hasattr(ds, "classes") else f"clip {i}")
    fig.suptitle(f"{run} ({'trained' if state is not None else 'untrained'} augmenter)", fontsize=8)
    path = out / "hard_speech.png"
    save_fig(fig, path)
    plt.close(fig)
    return path


def plot_images(images: list[str], out: Path, state_path: str | None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    aug = build_augmentation({"name": "learnable_stn_color"})
    if state_path:
        aug.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
    aug.train()
    batch = torch.stack([torch.from_numpy(plt.imread(p)[..., :3].copy()).float().permute(2, 0, 1)
                         for p in images])
    if batch.max() > 1.5:
        batch = batch / 255.0
    torch.manual_seed(0)
    with torch.no_grad():
        augd = aug(batch).clamp(0, 1)
    fig, axes = plt.subplots(len(images), 2, figsize=(5, 2.5 * len(images)), squeeze=False)
    for i in range(len(images)):
        for j, (title, im) in enumerate([("clean", batch[i]), ("HARD", augd[i])]):
            axes[i][j].imshow(im.permute(1, 2, 0).numpy())
            axes[i][j].axis("off")
            axes[i][j].set_title(title)
    path = out / "hard_images.png"
    save_fig(fig, path)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="a HARD run folder (config.yaml, save/)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--manifest", help="clips to plot (default: the run's valid.csv)")
    ap.add_argument("--untrained", action="store_true")
    ap.add_argument("--image", nargs="*", default=[])
    ap.add_argument("--image-state")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not args.run and not args.image:
        ap.error("give --run and/or --image")
    if args.run:
        print(plot_speech(Path(args.run), out, args.n, args.untrained, args.manifest))
    if args.image:
        print(plot_images(args.image, out, args.image_state))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
