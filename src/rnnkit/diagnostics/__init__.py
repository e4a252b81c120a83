"""Diagnostics: what happens to gradients through time."""

from rnnkit.diagnostics.gradflow import GradientFlow, gradient_flow
from rnnkit.diagnostics.plot import plot_gradient_flow

__all__ = ["GradientFlow", "gradient_flow", "plot_gradient_flow"]
