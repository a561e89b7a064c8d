"""Quantizer semantics of the QAT actor (paper Section 2.2, eq. 1)."""
import pytest
import torch

from qsearch.config import PolicyConfig, QuantBits
from qsearch.errors import QsearchError
from qsearch.quant import fastpath
from qsearch.quant.actor import QuantActor
from qsearch.quant.layers import OutputRange
from policies import warmed_actor


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_ranges_and_signedness(bits):
    actor = warmed_actor(QuantBits(bits, bits, bits, bits), updates=10)
    with torch.no_grad():
        qts = actor.quant_forward(torch.randn(4096, 11) * 50)  # far outside the scales: both ends clip
    lo_s, hi_s = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    for qt in (qts[0], qts[-1]):  # input and output: signed
        ints = qt.int()
        assert bool(qt.signed) and ints.min() == lo_s and ints.max() == hi_s
    for qt in qts[1:-1]:  # after ReLU: unsigned, full [0, 2^b - 1]
        ints = qt.int()
        assert not bool(qt.signed) and ints.min() == 0 and ints.max() == 2**bits - 1
    for lin in actor.linears:
        w = lin.quant_weight()
        assert w.int().min() >= lo_s and w.int().max() <= hi_s
        # weight scale fixed to the absolute maximum: scale = max|w| / q_s, q_s = 2^(b-1)
        assert torch.allclose(w.scale, lin.weight.abs().max() / 2 ** (bits - 1))


def test_integer_scale_qs():
    assert fastpath.int_scale(3, True) == 4  # [-4, 3]
    assert fastpath.int_scale(3, False) == 7  # [0, 7]
    actor = warmed_actor(QuantBits(4, 3, 3, 5))
    for layer, bits, signed in [(actor.inp, 4, True), (actor.relus[0], 3, False), (actor.out, 5, True)]:
        value = fastpath.scaling_impl(layer).value.abs()
        with torch.no_grad():
            scale = layer(torch.randn(2, actor.obs_dim if layer is actor.inp else 32)).scale
        assert torch.allclose(scale, value / fastpath.int_scale(bits, signed))


def test_straight_through_gradient():
    actor = warmed_actor(QuantBits(3, 3, 3, 3)).train()
    s = actor.quant_forward(torch.zeros(1, 11))[0].scale.detach()
    inside = torch.tensor([[0.37, -1.21, 2.05] + [0.0] * 8]) * s  # values between lattice points
    outside = torch.full((1, 11), 100.0) * s
    for x, expected in [(inside, 1.0), (outside, 0.0)]:
        x = x.clone().requires_grad_(True)
        actor.inp(x).value.sum().backward()
        # rounding is the identity for gradients; clipping at the range ends blocks them
        assert torch.all(x.grad == expected)


def test_warmup_counts_training_calls_then_learns_scale():
    torch.manual_seed(0)
    actor = QuantActor(5, 2, PolicyConfig(width=8, quant=QuantBits.from_scope("all", 4)))
    impl = fastpath.scaling_impl(actor.relus[0])
    with torch.no_grad():
        actor.eval()(torch.randn(64, 5))
    assert impl.counter == 0  # eval calls do not count
    opt = torch.optim.Adam(actor.parameters(), 1e-2)
    actor.train()
    for _ in range(300):
        loss = actor(torch.randn(64, 5)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if impl.counter < 300:  # during warm-up, the scale follows the statistics, not a gradient
            assert impl.value.grad is None or torch.all(impl.value.grad == 0)
    assert impl.counter == 300 and not fastpath.ready(actor)
    ema = impl.buffer.clone()
    actor(torch.randn(64, 5))  # call 301 turns the moving percentile into the learned parameter
    assert fastpath.ready(actor) and torch.allclose(impl.value.detach(), ema)
    before = impl.value.detach().clone()
    for _ in range(5):
        loss = (actor(torch.randn(64, 5)) - 0.1 * torch.randn(64, 2)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        assert impl.value.grad is not None and impl.value.grad.abs() > 0
        opt.step()
    assert not torch.equal(before, impl.value.detach())



def _warm_up(actor, make_input):
    actor.train()
    with torch.no_grad():
        for _ in range(301):  # the 301st call ends the warm-up
            actor(make_input())
    return fastpath.scaling_impl(actor.out)


def test_the_output_range_starts_at_least_at_its_floor_then_is_learned_and_kept():
    """A recurrent actor's outputs leave the warm-up nearly constant (its MLP sees a GRU state near
    zero); brevitas' statistic alone gives them a range Adam takes through zero in a few hundred updates
    (layers.OutputRange). The floor lifts it; it leaves a wider range, and a loaded one, as they are."""
    torch.manual_seed(0)
    policy = PolicyConfig(width=16, quant=QuantBits.from_scope("core", 8), encoder="gru", encoder_width=8)
    gru = QuantActor(2, 1, policy)
    impl = _warm_up(gru, lambda: torch.randn(16, 10, 2))
    assert impl.buffer < OutputRange.MIN_START  # what brevitas' statistic alone would have started from
    assert impl.value.item() == OutputRange.MIN_START

    mlp = QuantActor(5, 2, PolicyConfig(width=16, quant=QuantBits.from_scope("core", 4)))
    impl = _warm_up(mlp, lambda: 3 * torch.randn(64, 5))
    assert impl.buffer > OutputRange.MIN_START and torch.equal(impl.value.detach(), impl.buffer)

    with torch.no_grad():
        fastpath.scaling_impl(gru.out).value.fill_(0.1)  # as if learned below the floor
    loaded = QuantActor(2, 1, policy)
    loaded.load_state_dict(gru.state_dict())
    loaded.freeze_scales()  # what saving and extraction call
    assert fastpath.scaling_impl(loaded.out).value.item() == pytest.approx(0.1)


def test_fp32_baseline_is_plain_torch():
    actor = QuantActor(5, 2, PolicyConfig(width=8, quant=None))
    assert not actor.quantized
    assert all(type(m).__module__.startswith("torch.nn") for m in actor.modules() if m is not actor)


@pytest.mark.parametrize("scope,expected", [
    ("all", QuantBits(3, 3, 3, 3)), ("input", QuantBits(3, 8, 8, 8)),
    ("output", QuantBits(8, 8, 8, 3)), ("core", QuantBits(8, 3, 3, 8)),
])
def test_scopes(scope, expected):
    assert QuantBits.from_scope(scope, 3) == expected


@pytest.mark.parametrize("bad", [1, 9, 0, -2, 2.5, "4"])
def test_bits_out_of_range(bad):
    with pytest.raises(QsearchError, match="bits"):
        QuantBits(bits_in=bad)
