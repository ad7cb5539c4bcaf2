"""Calibration: metrics, post-hoc baselines and the calibration GAN (G_cal, D_cal)."""

from autogan_jax.calibration import metrics
from autogan_jax.calibration.adversarial import CalibrationGAN
from autogan_jax.calibration.adversarial import train_calibration_gan
from autogan_jax.calibration.baselines import BASELINES
from autogan_jax.calibration.baselines import fit_baseline
from autogan_jax.calibration.baselines import isotonic_fit
from autogan_jax.calibration.metrics import calibration_metrics
from autogan_jax.calibration.plots import plot_reliability

__all__ = [
    "BASELINES", "CalibrationGAN", "calibration_metrics", "fit_baseline", "isotonic_fit",
    "metrics", "plot_reliability", "train_calibration_gan",
]
