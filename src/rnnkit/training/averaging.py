"""Non-monotonically triggered averaged SGD (NT-ASGD; Merity et al. 2018, AWD-LSTM).

Plain SGD until validation stops improving, then SGD whose *reported* weights are
the running average of every iterate since that point (Polyak & Juditsky 1992)::

    w_{k+1} = w_k − η·∇L(w_k)                          (every step: SGD)
    trigger at evaluation t when  t > n  and  v_t > min(v_1 … v_{t−n})
    w̄ = (1/m) Σ_{j=1…m} w_{T+j}                        (after the trigger at step T)

``n`` is the non-monotone interval (AWD-LSTM: 5): the trigger waits until the loss
is worse than the best of the evaluations before the last ``n``, so one bad
evaluation does not start the averaging.

The Trainer evaluates and saves the averaged weights (:meth:`NTASGD.averaged`),
keeping the iterates it trains on, and feeds each validation loss to
:meth:`NTASGD.observe`. Everything the method needs (the losses seen, the step of
the trigger, the averages and the count) is in :meth:`state_dict`, and a checkpoint
taken inside :meth:`averaged` also holds the iterates themselves (``"iterate"``),
which :meth:`NTASGD.resumed` puts back after loading: a resumed run continues
exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor


class NTASGD(torch.optim.SGD):
    """SGD with the non-monotonically triggered average (see the module docstring).

    Args:
        params: the parameters.
        lr, momentum, weight_decay: SGD's.
        nonmono: n, the evaluations the trigger looks back past.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        *,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nonmono: int = 5,
    ) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        for group in self.param_groups:
            group.setdefault("nonmono", nonmono)
            group.setdefault("losses", [])  # the validation losses seen, in order
            group.setdefault("averaging_since", None)  # the step of the trigger

    @property
    def averaging(self) -> bool:
        """Whether the trigger has fired (the weights reported are the average)."""
        return self.param_groups[0]["averaging_since"] is not None

    def observe(self, loss: float, step: int) -> bool:
        """Record a validation loss at optimizer step ``step``; return True if it triggers."""
        group = self.param_groups[0]
        losses: list[float] = group["losses"]
        losses.append(float(loss))
        n = group["nonmono"]
        if self.averaging or len(losses) <= n or not loss > min(losses[:-n]):
            return False
        for g in self.param_groups:
            g["averaging_since"] = step
        return True

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        result = super().step(closure)
        if self.averaging:
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state[p]
                    if "average" not in state:
                        state["average"] = p.detach().clone()  # the first iterate
                        # m, as a tensor of the state: the Trainer's undo of a
                        # non-finite step restores it with the average.
                        state["count"] = torch.ones((), dtype=torch.float64)
                    else:
                        state["count"].add_(1.0)
                        weight = 1.0 / float(state["count"])
                        state["average"].add_(p.detach() - state["average"], alpha=weight)
        return result

    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        """Inside: the parameters hold the average (if averaging), the iterates kept aside.

        The iterates stay in the optimizer's state as ``"iterate"`` meanwhile, so a
        :meth:`state_dict` taken inside saves them (see :meth:`resumed`). Re-entrant:
        inside, a nested call changes nothing.
        """
        if self.__dict__.get("_inside"):
            yield
            return
        pairs = [
            (p, self.state[p])
            for group in self.param_groups
            for p in group["params"]
            if "average" in self.state[p]
        ]
        with torch.no_grad():
            for p, state in pairs:
                state["iterate"] = p.detach().clone()
                p.copy_(state["average"])
        self.__dict__["_inside"] = True
        try:
            yield
        finally:
            self.__dict__["_inside"] = False
            with torch.no_grad():
                for p, state in pairs:
                    p.copy_(state.pop("iterate"))

    @torch.no_grad()
    def finish(self) -> None:
        """At the end of training: the parameters keep the average for good."""
        for group in self.param_groups:
            for p in group["params"]:
                average = self.state[p].get("average")
                if average is not None:
                    p.copy_(average)

    @torch.no_grad()
    def resumed(self) -> None:
        """After loading a checkpoint saved inside :meth:`averaged`: its weights are the
        average; put the iterates back into the parameters to train on."""
        for group in self.param_groups:
            for p in group["params"]:
                iterate = self.state[p].pop("iterate", None)
                if iterate is not None:
                    p.copy_(iterate)


def averaged(optimizer: torch.optim.Optimizer) -> contextlib.AbstractContextManager[None]:
    """``optimizer.averaged()`` for :class:`NTASGD`, a no-op context for any other."""
    if isinstance(optimizer, NTASGD):
        return optimizer.averaged()
    return contextlib.nullcontext()
