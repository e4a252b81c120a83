"""Drop-in replacements for torch.nn's recurrent modules, running on rnnkit's backends.

``from rnnkit import nn as rnn`` then ``rnn.LSTM(...)`` where the code said
``torch.nn.LSTM(...)``: the same constructor, forward, parameter names and
``state_dict`` keys (each class subclasses torch.nn's), with the forward pass run by
:class:`rnnkit.Recurrent` on the backend that ``backend=`` names (``"auto"``, the
measured choice, by default). See :mod:`rnnkit.nn.rnn` and :mod:`rnnkit.nn.cell`
for what differs.
"""

from __future__ import annotations

from rnnkit.nn.cell import GRUCell, LSTMCell, RNNCell
from rnnkit.nn.rnn import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell"]
