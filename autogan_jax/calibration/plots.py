"""Reliability diagrams as PNG files (matplotlib, Agg backend)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import jax
import numpy as np

from autogan_jax.calibration import metrics


def plot_reliability(path: str | pathlib.Path, predictions: Mapping[str, jax.Array],
                     labels: jax.Array, title: str, num_bins: int = metrics.NUM_BINS) -> None:
  """Draw one reliability diagram per method (accuracy against confidence per bin) into `path`.

  Args:
    path: PNG file to write.
    predictions: method name to predicted probabilities [N, K].
    labels: true labels [N].
    title: figure title.
    num_bins: equal-width bins.
  """
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  names = list(predictions)
  fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.2), squeeze=False)
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  for ax, name in zip(axes[0], names):
    confidences, correct = metrics.top_label(predictions[name], labels)
    stats = jax.tree.map(np.asarray, metrics.bin_statistics(confidences, correct, num_bins))
    ece = float(metrics.expected_calibration_error(confidences, correct, num_bins))
    filled = stats["count"] > 0
    ax.bar(edges[:-1][filled], stats["accuracy"][filled], width=1.0 / num_bins, align="edge",
           edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set_title(f"{name}\nECE={ece:.3f}", fontsize=9)
    ax.set_xlabel("confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
  axes[0][0].set_ylabel("accuracy")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
