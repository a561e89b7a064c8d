"""The fused post-warm-up forward must equal brevitas' own forward: outputs bitwise, gradients closely."""
import pytest
import torch

from qsearch.config import QuantBits
from qsearch.quant import fastpath
from qsearch.rl.common import ModeSwitch
from policies import warmed_actor


@pytest.mark.parametrize("bits,depth", [(QuantBits(6, 2, 2, 8), 2), (QuantBits(8, 8, 8, 8), 1), (QuantBits(3, 4, 3, 2), 3)])
def test_fused_forward_equals_brevitas(bits, depth):
    actor = warmed_actor(bits, depth=depth)
    assert fastpath.ready(actor)
    x = torch.randn(512, 11) * 3
    for training in (True, False):
        actor.train(training)
        assert torch.equal(fastpath.forward(actor, x), actor.quant_forward(x)[-1].value)

    actor.train()
    weights = torch.randn(512, 3)

    def grads(forward):
        actor.zero_grad()
        (forward(x) * weights).sum().backward()
        return {n: p.grad.clone() for n, p in actor.named_parameters() if p.grad is not None}

    fused, reference = grads(lambda x: fastpath.forward(actor, x)), grads(lambda x: actor.quant_forward(x)[-1].value)
    assert fused.keys() == reference.keys() and len(fused) == 2 * (depth + 1) + depth + 2
    for name, ref in reference.items():
        # Equal up to float32 rounding: the fused backward computes g where brevitas computes g * s / s,
        # and sums a scale's gradient in another order. A scale's gradient is a sum of batch x width
        # terms that largely cancel, so the order alone moves it by ~1e-5 of its value (measured:
        # brevitas -0.02247129, fused -0.02247231, float64 -0.02247186).
        rtol = 1e-4 if ref.numel() == 1 else 1e-5
        assert torch.allclose(fused[name], ref, rtol=rtol, atol=1e-6 * float(ref.abs().max())), name


def test_not_ready_during_warmup():
    actor = warmed_actor(QuantBits(), updates=50)
    assert not fastpath.ready(actor)


@pytest.mark.parametrize("updates", [0, 50, 300])  # before any statistics, during, at the last warm-up call
@pytest.mark.parametrize("bits", [QuantBits(6, 2, 2, 8), QuantBits(3, 4, 3, 2)])
def test_warmup_eval_forward_equals_brevitas(bits, updates):
    """During the warm-up, eval mode without gradients runs the fused forward on brevitas' running
    statistics: bitwise brevitas' eval forward, and it moves no warm-up counter."""
    actor = warmed_actor(bits, updates=updates).eval()
    assert not fastpath.ready(actor)
    counters = [fastpath.scaling_impl(q).counter for q in actor.act_quantizers()]
    assert counters == [updates] * 4
    for x in (torch.randn(512, 11) * 3, torch.randn(1, 11)):
        with torch.no_grad():
            assert torch.equal(actor(x), actor.quant_forward(x)[-1].value)
            assert torch.equal(fastpath.forward(actor, x, warming=True), actor.quant_forward(x)[-1].value)
    assert [fastpath.scaling_impl(q).counter for q in actor.act_quantizers()] == counters


def test_no_grad_cache_follows_parameter_updates():
    actor = warmed_actor(QuantBits(6, 2, 2, 8))
    x = torch.randn(64, 11)
    with torch.no_grad():
        before = fastpath.forward(actor, x)
        assert torch.equal(before, fastpath.forward(actor, x))  # cached
    opt = torch.optim.SGD(actor.parameters(), lr=0.5)
    actor.train()
    (fastpath.forward(actor, x) - 1).pow(2).sum().backward()
    opt.step()
    actor.eval()
    with torch.no_grad():
        after = fastpath.forward(actor, x)
        assert not torch.equal(before, after)  # the step invalidated the cache
        assert torch.equal(after, actor.quant_forward(x)[-1].value)


def test_mode_switch_counts_warmup_updates_then_leaves_the_flags_alone():
    """During the warm-up the learners' switch puts the actor in training mode for its update's forward
    (brevitas counts those calls) and back; after it nothing reads the flags and the switch is skipped."""
    actor = warmed_actor(QuantBits(6, 2, 2, 8), updates=300).eval()
    switch, x = ModeSwitch(actor), torch.randn(8, 11)
    switch(True)
    assert all(m.training for m in actor.modules())
    actor(x)  # the training-mode call that ends the warm-up (brevitas: the counter passes 300)
    switch(False)
    assert not any(m.training for m in actor.modules())
    assert fastpath.ready(actor)
    switch(True)
    assert not any(m.training for m in actor.modules())  # skipped
    with torch.no_grad():
        assert torch.equal(actor(x), actor.quant_forward(x)[-1].value)
    assert [fastpath.scaling_impl(q).counter for q in actor.act_quantizers()] == [301] * 4  # nothing counted
