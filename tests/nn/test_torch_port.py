"""PyTorch's own tests of its recurrent modules (``test/test_nn.py``), ported to pytest.

Source: pytorch/pytorch ``test/test_nn.py`` (the version in the stored index,
commit 74f2fa66), classes ``TestNN`` and ``TestNNDeviceType`` (CPU instantiation).
Each test keeps the original's inputs and assertions, restated in pytest, and runs
against every implementation in :mod:`tests.nn.impls`: torch.nn itself (which proves
the port) and rnnkit.nn with its default and each pinned backend. The assertions
use torch's own comparison (``torch.testing.assert_close`` with the dtype's default
tolerances, or the explicit ``atol``/``rtol`` the original gives).

Ported here (27): test_RNN_nonlinearity, test_RNN_nonlinearity_passed_as_arg,
test_rnn_weight_norm, test_RNN_cell, test_RNN_cell_forward_zero_hidden_size,
test_RNN_cell_no_broadcasting, test_LSTM_cell, test_LSTM_cell_forward_input_size,
test_LSTM_cell_forward_hidden_size, test_cudnn_forward_exception (it runs on the CPU
upstream too), test_rnn_args_check, test_projections_lstm_args_check,
test_rnn_initial_hidden_state, test_projections_lstm_initial_hidden_state,
test_projections_errors_on_gru_and_rnn, test_RNN_input_size_zero, test_RNN_dropout,
test_error_RNN_seq_len_zero, test_RNN_dropout_state, test_RNN_change_dropout,
test_rnn_retain_variables, test_LSTM_grad_and_gradgrad, test_GRU_grad_and_gradgrad,
test_LSTM_differentiable_backward_using_oneDNN, test_save_lstm_compatibility,
test_variable_sequence, test_lstmcell_backward_only_one_output_grad.

Counts (2026-12-04, this file and tests/nn/test_torch_port_modules.py, the port of
common_modules.py's six RNN entries through test_modules.py's generic tests): torch.nn
passes 34 + 131 = 165 of 165; rnnkit.nn on its default backend (``auto``) 34 + 248 =
282 of 282 (it runs both dtypes and modes); pinned, ``unrolled`` and ``native`` 27 + 43
= 70 of 70 each, ``fused`` 55 of 70 with the 15 cases below that cannot pass.

Notes on four of them:

* test_RNN_dropout, test_RNN_dropout_state, test_RNN_change_dropout and
  test_error_RNN_seq_len_zero carry ``skipIf(not TEST_CUDNN)`` upstream, but their
  bodies loop over the CPU and CUDA; the CPU half is ported, the CUDA half is not.
* test_lstmcell_backward_only_one_output_grad is ``@onlyCUDA`` upstream, but its body
  names no device; it runs on the CPU here.

Not ported, CUDA, cuDNN or several GPUs only (not applicable on a CPU machine, 11):
test_pack_sequence_batch_sizes_throw, test_cudnn_rnn_dropout_states_device,
test_cudnn_weight_format, test_cudnn_weight_tying, test_rnn_check_device,
test_projections_lstm_check_device, test_RNN_cpu_vs_cudnn_no_dropout,
test_RNN_cpu_vs_cudnn_with_dropout, test_RNN_cudnn_weight_norm,
test_partial_flat_weights, test_rnn_fused; and the cuDNN-disabled rerun inside
test_rnn_retain_variables.

Where the original loops over a projected and a plain LSTM (test_rnn_weight_norm,
test_cudnn_forward_exception, test_variable_sequence), each is a case of its own
here, so that the one limitation below marks only the projected case.

Tests that cannot pass on rnnkit.nn, marked ``xfail(strict=True, raises=ValueError)``
so that they fail loudly once they pass:

* on ``rnnkit-fused``, every case with an LSTM of ``proj_size > 0``
  (test_rnn_weight_norm[rnnkit-fused-16], test_cudnn_forward_exception[rnnkit-fused-1],
  test_projections_lstm_args_check[rnnkit-fused],
  test_projections_lstm_initial_hidden_state[rnnkit-fused],
  test_variable_sequence[rnnkit-fused-2]): rnnkit.nn.LSTM refuses ``backend="fused"``
  with a projection at construction, as its docstring says (the fused backward
  implements the plain LSTM only).

The suite turns warnings into errors; two of torch's own warnings are let through
where the original meets them: oneDNN's "LSTM with projections is not supported"
(torch.nn's CPU kernel, once per process) and torch.nn.utils.weight_norm's deprecation.
"""

# The tests keep PyTorch's names (test_RNN_cell, test_LSTM_grad_and_gradgrad), to be found upstream.
# ruff: noqa: N802

from __future__ import annotations

import io
import re
from copy import deepcopy
from typing import Any

import pytest
import torch
import torch.nn.utils.rnn as rnn_utils
from torch import Tensor, nn
from torch.autograd import gradcheck, gradgradcheck

from tests.nn.impls import (
    ALL,
    CELLS,
    PROJECTED,
    Impl,
    assert_equal,
    assert_not_equal,
    fused_refuses,
    impl_cases,
    raises,
    seeded,
)

# torch.nn warns (once per process) that oneDNN cannot run a projected LSTM; the suite
# turns warnings into errors, the original does not.
__all__ = ["seeded"]  # the autouse fixture, imported to be used here

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

# torch's common_nn dtype2prec_DONTUSE, for the tests that use it.
PRECISION = {torch.float: 1e-5, torch.double: 1e-5, torch.half: 1e-2, torch.bfloat16: 1e-1}


@pytest.fixture
def double_default() -> Any:
    """torch's @set_default_dtype(torch.double)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.double)
    yield
    torch.set_default_dtype(previous)


# --- TestNN --------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ALL)
def test_RNN_nonlinearity(impl: Impl) -> None:
    rnn = impl.RNN(1, 10)
    assert rnn.nonlinearity == "tanh"

    rnn = impl.RNN(1, 10, nonlinearity="relu")
    assert rnn.nonlinearity == "relu"

    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        impl.RNN(1, 10, nonlinearity="garbage")


@pytest.mark.parametrize("impl", ALL)
def test_RNN_nonlinearity_passed_as_arg(impl: Impl) -> None:
    rnn = impl.RNN(2, 3, 1, "relu")
    assert rnn.nonlinearity == "relu"


# torch.nn.utils.weight_norm is deprecated (FutureWarning); the test is of the old API.
@pytest.mark.filterwarnings("ignore:.*torch.nn.utils.weight_norm.*:FutureWarning")
@pytest.mark.parametrize(("impl", "proj_size"), impl_cases((0, 16), xfail=fused_refuses))
def test_rnn_weight_norm(impl: Impl, proj_size: int) -> None:
    # The original checks both cases in one test; here each is a case of its own.
    def check_weight_norm(module: nn.Module, name: str, num_params: int) -> None:
        # Weight norm on one of the parameters turns it into a plain tensor...
        module = torch.nn.utils.weight_norm(module, name=name)
        assert sum(isinstance(p, nn.Parameter) for p in module._flat_weights) == num_params - 1

        # ...and removing it restores the Parameter.
        module = torch.nn.utils.remove_weight_norm(module, name=name)
        assert sum(isinstance(p, nn.Parameter) for p in module._flat_weights) == num_params

        # The original weight is back among the parameters, its components gone.
        assert name in module._parameters
        assert module._parameters[name] is not None
        assert name + "_v" not in module._parameters
        assert name + "_g" not in module._parameters
        named = dict(module.named_parameters())
        assert name in named
        assert named[name] is not None
        assert name + "_v" not in named
        assert name + "_g" not in named

    if proj_size == 0:
        check_weight_norm(impl.LSTM(32, 32), "weight_ih_l0", 4)
    else:
        check_weight_norm(impl.LSTM(32, 32, proj_size=16), "weight_hr_l0", 5)


@pytest.mark.parametrize("impl", CELLS)
def test_RNN_cell(impl: Impl) -> None:
    # A smoke test: six steps and a backward pass.
    for module in (impl.RNNCell, impl.GRUCell):
        for bias in (True, False):
            input = torch.randn(3, 10)
            hx = torch.randn(3, 20)
            cell = module(10, 20, bias=bias)
            for _ in range(6):
                hx = cell(input, hx)
            hx.sum().backward()


@pytest.mark.parametrize("impl", CELLS)
def test_RNN_cell_forward_zero_hidden_size(impl: Impl) -> None:
    input = torch.randn(3, 10)
    hx = torch.randn(3, 0)
    for cell in (
        impl.RNNCell(10, 0, nonlinearity="relu"),
        impl.RNNCell(10, 0, nonlinearity="tanh"),
        impl.GRUCell(10, 0),
    ):
        assert cell(input, hx).shape == torch.Size([3, 0])


@pytest.mark.parametrize("impl", CELLS)
def test_RNN_cell_no_broadcasting(impl: Impl) -> None:
    def test(cell_module: Any, input: Tensor, hx: Any, input_size: int, hidden_size: int) -> None:
        cell = cell_module(input_size, hidden_size)
        raises(RuntimeError, lambda: cell(input, hx))

    def test_all(
        hidden_size: int, bad_hx: Tensor, good_hx: Tensor, input_size: int, input: Tensor
    ) -> None:
        test(impl.RNNCell, input, bad_hx, input_size, hidden_size)
        test(impl.GRUCell, input, bad_hx, input_size, hidden_size)
        test(impl.LSTMCell, input, (bad_hx, good_hx), input_size, hidden_size)
        test(impl.LSTMCell, input, (good_hx, bad_hx), input_size, hidden_size)

    hidden_size, input_size = 20, 10
    input = torch.randn(3, input_size)
    bad_hx = torch.randn(1, hidden_size)
    good_hx = torch.randn(3, hidden_size)
    # hidden/input batch size broadcasting
    test_all(hidden_size, bad_hx, good_hx, input_size, input)
    # hx's hidden_size vs the module's hidden_size broadcasting
    bad_hx = torch.randn(3, 1)
    test_all(hidden_size, bad_hx, good_hx, input_size, input)
    # the input's input_size vs the module's input_size broadcasting
    bad_input = torch.randn(3, 1)
    test_all(hidden_size, good_hx, good_hx, input_size, bad_input)


@pytest.mark.parametrize("impl", CELLS)
def test_LSTM_cell(impl: Impl) -> None:
    # A smoke test: six steps and a backward pass.
    for bias in (True, False):
        input = torch.randn(3, 10)
        hx = torch.randn(3, 20)
        cx = torch.randn(3, 20)
        lstm = impl.LSTMCell(10, 20, bias=bias)
        for _ in range(6):
            hx, cx = lstm(input, (hx, cx))
        (hx + cx).sum().backward()


@pytest.mark.parametrize("impl", CELLS)
def test_LSTM_cell_forward_input_size(impl: Impl) -> None:
    input = torch.randn(3, 11)
    hx = torch.randn(3, 20)
    cx = torch.randn(3, 20)
    lstm = impl.LSTMCell(10, 20)
    raises(Exception, lambda: lstm(input, (hx, cx)))


@pytest.mark.parametrize("impl", CELLS)
def test_LSTM_cell_forward_hidden_size(impl: Impl) -> None:
    input = torch.randn(3, 10)
    hx = torch.randn(3, 21)
    cx = torch.randn(3, 20)
    lstm = impl.LSTMCell(10, 20)
    raises(Exception, lambda: lstm(input, (hx, cx)))
    raises(Exception, lambda: lstm(input, (cx, hx)))


@pytest.mark.parametrize(
    ("impl", "case"), impl_cases((0, 1, 2, 3), xfail=lambda i, c: fused_refuses(i, c == 1))
)
def test_cudnn_forward_exception(impl: Impl, case: int) -> None:
    # The original loops over these four modules; here each is a case of its own.
    rnn, hidden = [
        lambda: (
            impl.LSTM(10, 20, batch_first=True),
            (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19)),
        ),
        lambda: (
            impl.LSTM(10, 20, batch_first=True, proj_size=10),
            (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19)),
        ),
        lambda: (impl.GRU(10, 20, batch_first=True), torch.zeros(1, 2, 19)),
        lambda: (impl.RNN(10, 20, batch_first=True), torch.zeros(1, 2, 19)),
    ][case]()
    x_wrong = torch.randn(2, 3, 3)
    x_right = torch.randn(2, 3, 10)
    with pytest.raises(RuntimeError, match=r"Expected hidden.*size.*got"):
        rnn(x_right, hidden)
    with pytest.raises(RuntimeError, match=re.escape("input.size(-1) must be equal to input_size")):
        rnn(x_wrong)


def _update_shape(shape: tuple[int, ...], dim: int, new_dim_size: int) -> tuple[int, ...]:
    new_shape = list(shape)
    new_shape[dim] = new_dim_size
    return tuple(new_shape)


@pytest.mark.parametrize("mode", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("impl", ALL)
def test_rnn_args_check(impl: Impl, mode: str) -> None:
    input_size, hidden_size, num_layers = 3, 5, 2
    batch_size, seq_len, num_directions = 4, 6, 1
    bad_size = 7  # prime, so that no size divides it
    correct_input_shape = (seq_len, batch_size, input_size)
    correct_hidden_shape = (num_layers * num_directions, batch_size, hidden_size)

    def get_inputs(input_shape: tuple[int, ...], hidden_shape: tuple[int, ...]) -> list[Any]:
        """[(input, hidden)] for the model."""
        input = torch.randn(input_shape)
        hidden = torch.randn(hidden_shape)
        if mode != "LSTM":
            return [(input, hidden)]
        if hidden_shape == correct_hidden_shape:
            return [(input, (hidden, hidden))]
        good_hidden = torch.randn(correct_hidden_shape)
        return [(input, (hidden, good_hidden)), (input, (good_hidden, hidden))]

    def test(input_shape: tuple[int, ...], hidden_shape: tuple[int, ...]) -> None:
        for input, hidden in get_inputs(input_shape, hidden_shape):
            model = impl.factory(mode)(input_size, hidden_size, num_layers)
            raises(RuntimeError, lambda: model(input, hidden))  # noqa: B023

    # incorrect input batch size
    test(_update_shape(correct_input_shape, 1, bad_size), correct_hidden_shape)
    # incorrect hidden batch size
    test(correct_input_shape, _update_shape(correct_hidden_shape, 1, bad_size))
    # incorrect input size
    test(_update_shape(correct_input_shape, 2, bad_size), correct_hidden_shape)
    # incorrect hidden size
    test(correct_input_shape, _update_shape(correct_hidden_shape, 2, bad_size))
    # incorrect hidden[0]
    test(correct_input_shape, _update_shape(correct_hidden_shape, 0, bad_size))


@pytest.mark.parametrize("impl", PROJECTED)
def test_projections_lstm_args_check(impl: Impl) -> None:
    input_size, hidden_size, proj_size, num_layers = 3, 5, 2, 2
    batch_size, seq_len, num_directions = 4, 6, 1
    bad_size = 7  # prime, so that no size divides it
    correct_input_shape = (seq_len, batch_size, input_size)
    correct_h_shape = (num_layers * num_directions, batch_size, proj_size)
    correct_c_shape = (num_layers * num_directions, batch_size, hidden_size)

    def test(
        input_shape: tuple[int, ...], h_shape: tuple[int, ...], c_shape: tuple[int, ...]
    ) -> None:
        input = torch.randn(input_shape)
        hidden = (torch.randn(h_shape), torch.randn(c_shape))
        model = impl.LSTM(input_size, hidden_size, num_layers, proj_size=proj_size)
        raises(RuntimeError, lambda: model(input, hidden))

    # incorrect input batch size
    test(_update_shape(correct_input_shape, 1, bad_size), correct_h_shape, correct_c_shape)
    # incorrect hidden batch size
    test(
        correct_input_shape,
        _update_shape(correct_h_shape, 1, bad_size),
        _update_shape(correct_c_shape, 1, bad_size),
    )
    # incorrect input size
    test(_update_shape(correct_input_shape, 2, bad_size), correct_h_shape, correct_c_shape)
    # incorrect hidden size
    test(
        correct_input_shape,
        _update_shape(correct_h_shape, 2, bad_size),
        _update_shape(correct_c_shape, 2, bad_size),
    )
    # incorrect hidden[0]
    test(
        correct_input_shape,
        _update_shape(correct_h_shape, 0, bad_size),
        _update_shape(correct_c_shape, 0, bad_size),
    )
    # incorrect proj size = hidden size
    test(correct_input_shape, _update_shape(correct_h_shape, 0, hidden_size), correct_c_shape)
    # incorrect proj size != hidden size
    test(correct_input_shape, _update_shape(correct_h_shape, 0, bad_size), correct_c_shape)
    # incorrect cell size != hidden size
    test(correct_input_shape, correct_h_shape, _update_shape(correct_c_shape, 0, bad_size))


@pytest.mark.parametrize("impl", ALL)
def test_rnn_initial_hidden_state(impl: Impl) -> None:
    for mode in ("RNN", "GRU", "LSTM"):
        rnn = impl.factory(mode)(30, 20, 2)
        input = torch.randn(10, 32, 30)
        hidden: Any = torch.zeros(2, 32, 20)
        if mode == "LSTM":
            hidden = (hidden, hidden)
        output1, hidden1 = rnn(input, hidden)
        output2, hidden2 = rnn(input)
        assert_equal(output1, output2)
        assert_equal(hidden1, hidden2)


@pytest.mark.parametrize("impl", PROJECTED)
def test_projections_lstm_initial_hidden_state(impl: Impl) -> None:
    for bidir in (False, True):
        rnn = impl.LSTM(30, 20, 2, bidirectional=bidir, proj_size=10)
        num_dirs = 2 if bidir else 1
        input = torch.randn(10, 32, 30)
        hidden = (torch.zeros(2 * num_dirs, 32, 10), torch.zeros(2 * num_dirs, 32, 20))
        output1, hidden1 = rnn(input, hidden)
        output2, hidden2 = rnn(input)
        assert_equal(output1, output2)
        assert_equal(hidden1, hidden2)


@pytest.mark.parametrize("impl", ALL)
def test_projections_errors_on_gru_and_rnn(impl: Impl) -> None:
    error_msg = "proj_size argument is only supported for LSTM, not RNN or GRU"
    for mode in ("RNN", "GRU"):
        with pytest.raises(ValueError, match=error_msg):
            impl.factory(mode)(30, 20, 2, proj_size=10)


@pytest.mark.parametrize("impl", ALL)
def test_RNN_input_size_zero(impl: Impl) -> None:
    for mode in ("RNN", "LSTM", "GRU"):
        input = torch.zeros((5, 0, 3))
        rnn = impl.factory(mode)(input_size=3, hidden_size=4)
        outs = rnn(input)
        assert outs[0].shape == torch.Size([5, 0, 4])
        # backward must not fail hard
        outs[0].sum().backward()


@pytest.mark.usefixtures("double_default")
@pytest.mark.parametrize("impl", ALL)
def test_RNN_dropout(impl: Impl) -> None:
    # cuDNN puts dropout between the layers; the CPU must too (the CPU half of the test).
    for p in (0, 0.276, 0.731, 1):
        for train in (True, False):
            rnn = impl.RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu")
            rnn.train(train)
            with torch.no_grad():
                rnn.weight_ih_l0.fill_(1)
                rnn.weight_hh_l0.fill_(1)
                rnn.weight_ih_l1.fill_(1)
                rnn.weight_hh_l1.fill_(1)
            input = torch.ones(1, 1, 10)
            hx = torch.zeros(2, 1, 1000)

            output, hy = rnn(input, hx)
            assert_equal(output.data.min(), output.data.max())
            output_val = output.data[0][0][0]
            if p == 0 or not train:
                assert_equal(output_val, 10000)
            elif p == 1:
                assert_equal(output_val, 0)
            else:
                assert output_val > 8000
                assert output_val < 12000
                denorm_mod = (output_val * (1 - p)) % 10
                assert min(denorm_mod, 10 - denorm_mod) < 1e-2

            assert_equal(hy[0].data.min(), hy[0].data.max())
            assert_equal(hy[1].data.min(), hy[1].data.max())
            assert_equal(hy.data[0][0][0], 10)
            assert_equal(hy.data[1][0][0], output_val)


@pytest.mark.usefixtures("double_default")
@pytest.mark.parametrize("impl", ALL)
def test_error_RNN_seq_len_zero(impl: Impl) -> None:
    for mode in ("RNN", "LSTM", "GRU"):
        for bidirectional in (True, False):
            input = torch.ones(0, 10, 5)
            rnn = impl.factory(mode)(5, 6, bidirectional=bidirectional)
            with pytest.raises(
                RuntimeError, match="Expected sequence length to be larger than 0 in RNN"
            ):
                rnn(input)


@pytest.mark.parametrize("impl", ALL)
def test_RNN_dropout_state(impl: Impl) -> None:
    for p in (0, 0.1234):
        for train in (True, False):
            rnn = impl.RNN(100, 100, 2, bias=False, dropout=p, nonlinearity="relu")
            rnn.train(train)
            input = torch.rand(1, 1, 100)
            hx = torch.rand(2, 1, 100)

            output1, hy1 = rnn(input, hx)
            output2, hy2 = rnn(input, hx)

            buffer = io.BytesIO()
            torch.save(rnn, buffer)
            buffer.seek(0)
            # weights_only=False: the test pickles the whole module, as the original does
            rnn2 = torch.load(buffer, weights_only=False)
            rnn2.flatten_parameters()
            output3, hy3 = rnn2(input, hx)

            if p == 0 or not train:
                assert_equal(output1, output2)
                assert_equal(output1, output3)
                assert_equal(hy1, hy2)
                assert_equal(hy1, hy3)
            else:
                assert_not_equal(output1, output2)
                assert_not_equal(output1, output3)
                assert_not_equal(hy1, hy2)
                assert_not_equal(hy1, hy3)


@pytest.mark.usefixtures("double_default")
@pytest.mark.parametrize("impl", ALL)
def test_RNN_change_dropout(impl: Impl) -> None:
    for train in (True, False):
        rnn = impl.RNN(100, 100, 2, dropout=0, nonlinearity="relu")
        input = torch.rand(3, 2, 100)
        rnn.train(train)

        prev_output = None
        for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
            rnn.dropout = p
            output1, hy1 = rnn(input)
            output2, hy2 = rnn(input)

            if p in (0, 1) or not train:
                assert_equal(output1, output2)
                assert_equal(hy1, hy2)
            else:
                assert_not_equal(output1, output2)
                assert_not_equal(hy1, hy2)

            if prev_output is not None:
                if not train:
                    assert_equal(output1.data, prev_output)
                    assert_equal(output2.data, prev_output)
                else:
                    assert_not_equal(output1.data, prev_output)
                    assert_not_equal(output2.data, prev_output)
            prev_output = output1.data


# --- TestNNDeviceType, on the CPU ------------------------------------------------------


@pytest.mark.parametrize("impl", ALL)
def test_rnn_retain_variables(impl: Impl) -> None:
    dtype = torch.double  # @dtypes(torch.double) on the CPU
    rnns = [
        impl.LSTM(10, 20, num_layers=2).to(dtype),
        impl.GRU(10, 20, num_layers=2).to(dtype),
        impl.RNN(10, 20, num_layers=2).to(dtype),
    ]
    for rnn in rnns:
        input = torch.randn(5, 6, 10, dtype=dtype, requires_grad=True)
        output = rnn(input)
        output[0].sum().backward(retain_graph=True)
        grads = [input.grad.data.clone()] + [p.grad.data.clone() for p in rnn.parameters()]
        for _ in range(4):
            rnn.zero_grad()
            input.grad.data.zero_()
            output[0].sum().backward(retain_graph=True)
            grads2 = [input.grad.data] + [p.grad.data for p in rnn.parameters()]
            assert_equal(grads, grads2)


@pytest.mark.parametrize("impl", CELLS)
def test_lstmcell_backward_only_one_output_grad(impl: Impl) -> None:
    # An undefined gradient for one output must not hamper the backward pass (#11872).
    cell = impl.LSTMCell(2, 3).to(dtype=torch.double)
    s = torch.randn(1, 2, dtype=torch.double, requires_grad=True)
    for i in range(2):
        out = cell(s)[i]
        out.sum().backward()
        assert not (s.grad is None or s.grad.abs().sum().item() == 0)


def _test_rnn_mod(mod: nn.Module, inp: Tensor) -> None:
    def flatten_out(inp: Tensor) -> tuple[Tensor, ...]:
        out = mod(inp)
        # As the original: a tensor t contributes itself once per row of t (``for tt in
        # t``), a tuple (h, c) its members.
        return tuple(t if isinstance(t, Tensor) else tt for t in out for tt in t)

    with torch.backends.cudnn.flags(enabled=False):
        assert gradcheck(flatten_out, inp, check_batched_grad=False, fast_mode=True)
        assert gradgradcheck(flatten_out, inp, check_batched_grad=False, fast_mode=True)


@pytest.mark.parametrize("impl", ALL)
def test_LSTM_grad_and_gradgrad(impl: Impl) -> None:
    hsize = 4
    inp = torch.rand(1, 3, hsize, dtype=torch.double, requires_grad=True)
    for bias in (True, False):
        mod = impl.LSTM(hsize, hsize, bias=bias).to(torch.double)
        _test_rnn_mod(mod, inp)


@pytest.mark.parametrize("impl", ALL)
def test_GRU_grad_and_gradgrad(impl: Impl) -> None:
    hsize = 4
    inp = torch.rand(1, 3, hsize, dtype=torch.double, requires_grad=True)
    for bias in (True, False):
        mod = impl.GRU(hsize, hsize, bias=bias).to(torch.double)
        _test_rnn_mod(mod, inp)


@pytest.mark.parametrize("impl", ALL)
def test_LSTM_differentiable_backward_using_oneDNN(impl: Impl) -> None:
    # @dtypes(torch.float32, torch.bfloat16) upstream, but the body ignores the dtype:
    # one run. oneDNN is switched off, then on, as the original; restored afterwards.
    batch, seq_len, input = 10, 12, 3
    net = impl.LSTM(input, 3, 20, batch_first=True)
    x = torch.rand(batch, seq_len, input)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)

    was_enabled = torch._C._get_mkldnn_enabled()
    try:
        torch._C._set_mkldnn_enabled(False)
        out1, _ = net(x1)
        der_out1 = torch.autograd.grad(
            out1, x1, grad_outputs=torch.ones_like(out1), retain_graph=True, create_graph=True
        )[0]
        der_out1.sum().backward(retain_graph=True)

        torch._C._set_mkldnn_enabled(True)
        out2, _ = net(x2)
        der_out2 = torch.autograd.grad(
            out2, x2, grad_outputs=torch.ones_like(out2), retain_graph=True, create_graph=True
        )[0]
        der_out2.sum().backward(retain_graph=True)
    finally:
        torch._C._set_mkldnn_enabled(was_enabled)
    assert torch.allclose(der_out1, der_out2)
    assert torch.allclose(x1.grad, x2.grad)


@pytest.mark.parametrize("impl", ALL)
def test_save_lstm_compatibility(impl: Impl) -> None:
    # An LSTM saved by PyTorch 1.7 or older (no proj_size) must still load.
    model = impl.LSTM(2, 3)
    x = torch.randn(32, 5, 2)
    expected = model(x)

    assert model.proj_size == 0
    state_dict = model.__dict__
    del state_dict["proj_size"]

    loaded_model = impl.LSTM(2, 3)
    loaded_model.__setstate__(state_dict)
    result = loaded_model(x)
    assert_equal(result, expected)


@pytest.mark.parametrize(("impl", "proj_size"), impl_cases((0, 2), xfail=fused_refuses))
def test_variable_sequence(impl: Impl, proj_size: int) -> None:
    # The original loops over proj_size in (0, 2); here each is a case of its own.
    dtype = torch.float  # @dtypes(torch.float) on the CPU

    def pad(var: Tensor, length: int) -> Tensor:
        if var.size(0) == length:
            return var
        return torch.cat([var, var.new_zeros(length - var.size(0), *var.size()[1:])])

    def maybe_index_tuple(maybe_tuple: tuple[Tensor, Tensor] | None, index: int) -> Any:
        if maybe_tuple is None:
            return None
        return tuple(maybe_tuple[j][:, index : index + 1, :].contiguous() for j in range(2))

    def check_lengths(lengths: list[int], enforce_sorted: bool, use_default_hiddens: bool) -> None:
        input_size, hidden_size, num_layers, bidirectional = 3, 4, 2, True
        max_length = max(lengths)
        x_leaf = torch.randn(max_length, len(lengths), input_size, dtype=dtype, requires_grad=True)
        num_directions = 2 if bidirectional else 1
        lstm = impl.LSTM(
            input_size,
            hidden_size,
            bidirectional=bidirectional,
            num_layers=num_layers,
            proj_size=proj_size,
        ).to(dtype)
        lstm2 = deepcopy(lstm).to(dtype)
        x = x_leaf

        hidden0 = None
        if not use_default_hiddens:
            real_hidden_size = hidden_size if proj_size == 0 else proj_size
            hidden0 = (
                torch.randn(
                    num_directions * num_layers, len(lengths), real_hidden_size, dtype=dtype
                ),
                torch.randn(num_directions * num_layers, len(lengths), hidden_size, dtype=dtype),
            )

        # each sequence on its own
        seq_outs = []
        seq_hiddens = []
        for i, length in enumerate(lengths):
            hidden_i = maybe_index_tuple(hidden0, i)
            out, hid = lstm2(x[:length, i : i + 1], hidden_i)
            seq_outs.append(pad(out, max_length))
            seq_hiddens.append(hid)
        seq_out = torch.cat(seq_outs, 1)
        seq_hidden = tuple(torch.cat(hids, 1) for hids in zip(*seq_hiddens, strict=True))

        # the packed batch
        packed = rnn_utils.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
        packed_out, packed_hidden = lstm(packed, hidden0)
        unpacked, unpacked_len = rnn_utils.pad_packed_sequence(packed_out)

        # forward
        prec = PRECISION[dtype]
        assert_equal(packed_hidden, seq_hidden, atol=prec, rtol=0)
        assert_equal(unpacked, seq_out, atol=prec, rtol=0)
        assert_equal(unpacked_len, lengths, atol=prec, rtol=0)

        # backward
        seq_out.sum().backward()
        grad_x = x_leaf.grad.data.clone()
        x_leaf.grad.data.zero_()
        unpacked.sum().backward()

        assert_equal(x_leaf.grad, grad_x, atol=PRECISION[dtype], rtol=0)
        for p1, p2 in zip(lstm.parameters(), lstm2.parameters(), strict=True):
            assert_equal(p1.grad, p2.grad, atol=2e-4, rtol=0)  # the float32 precision upstream

    tests = [
        # enforce_sorted, lengths
        (True, [5]),
        (False, [5]),
        (True, [10, 10, 6, 2, 2, 1, 1]),
        (False, [10, 10, 6, 2, 2, 1, 1]),
        (False, [2, 1, 3, 2, 10, 5, 3]),
    ]
    for enforce_sorted, seq_lens in tests:
        for use_default_hiddens in (True, False):
            check_lengths(seq_lens, enforce_sorted, use_default_hiddens)
