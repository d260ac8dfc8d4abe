"""Shared finishing of the project's matplotlib figures (written atomically)."""
from __future__ import annotations

from kws_okd.utils.atomic import atomic_path


def save_figure(fig, ax, path, title: str, legend_size: int = 8) -> None:
    import matplotlib.pyplot as plt
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
