"""The loss curve of a training run as a PNG (matplotlib's Agg backend)."""

from __future__ import annotations

import io

from .config import TrainSummary

__all__ = ["loss_curve_png"]


def loss_curve_png(summary: TrainSummary, dpi: int = 80) -> bytes:
    """One panel per stage: training and validation loss per epoch, the kept (best) epoch marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    stages = list(summary.stages.values()) or []
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(4.8 * max(1, len(stages)), 3.2), squeeze=False)
    try:
        for ax, s in zip(axes.ravel(), stages, strict=False):
            epochs = list(range(1, len(s.train_loss) + 1))
            ax.plot(epochs, s.train_loss, marker="o", ms=3, label="train")
            ax.plot(epochs, s.val_loss, marker="o", ms=3, label="validation")
            if s.best_epoch:
                ax.axvline(s.best_epoch, color="grey", lw=0.8, ls="--", label=f"kept: epoch {s.best_epoch}")
            ax.set_title(
                f"{s.stage} ({'cross-entropy' if s.stage == 'predictor' else 'reconstruction'})", fontsize=9
            )
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7)
        if not stages:
            axes.ravel()[0].text(0.5, 0.5, "no stage ran", ha="center")
        fig.suptitle(
            f"{summary.name}: cutoff {summary.cutoff[:10]}, validation from {summary.val_start[:10]}",
            fontsize=10,
        )
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
    finally:
        plt.close(fig)
