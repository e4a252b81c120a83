"""Tests of rnnkit.nn, the drop-in replacements for torch.nn's recurrent modules."""
