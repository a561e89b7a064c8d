"""The recurrent policy's model: the GRU encoder's fast path against brevitas', and the stateful integer
engine against the float64 reference at every step of long sequences."""
import json

import numpy as np
import pytest
import torch

from qsearch.config import PolicyConfig, QuantBits
from qsearch.errors import QsearchError
from qsearch.obs_norm import ObsNorm
from qsearch.quant import fastpath, integer
from qsearch.quant.actor import QuantActor
from policies import gru_actor


@pytest.mark.parametrize("bits", [8, 2])
def test_fast_path_is_brevitas_step_by_step(bits):
    actor = gru_actor(bits, warm=True)
    assert fastpath.ready(actor)
    x = torch.randn(5, 9, 3, requires_grad=True)
    h, means, states = actor.initial_state(5), [], []
    for t in range(9):  # brevitas' own modules, one step at a time (the streaming deployment)
        parts, qts = actor.quant_step(x[:, t], h)
        h = parts["h"]
        means.append(qts[-1].value)
        states.append(h)
    means, states = torch.stack(means, 1), torch.stack(states, 1)
    fast_means, fast_states = fastpath.sequence(actor, x, actor.initial_state(5))
    assert torch.equal(fast_means, means) and torch.equal(fast_states, states)
    params = [x, *actor.parameters()]
    want = torch.autograd.grad(means.sum() + states.square().sum(), params)
    got = torch.autograd.grad(fast_means.sum() + fast_states.square().sum(), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)  # float32 rounding of the fused sums


def test_step_carries_the_state_as_a_sequence_does():
    actor = gru_actor(4)
    x = torch.randn(3, 6, 3)
    means, states = actor.sequence(x)
    h = actor.initial_state(3)
    for t in range(6):
        m, h = actor.step(x[:, t], h)
        assert torch.equal(m, means[:, t]) and torch.equal(h, states[:, t])


@pytest.mark.parametrize("bits", [8, 3])
def test_engine_equals_the_reference_at_every_step(bits):
    """Integer for integer, every quantizer of every step, over 150 steps of 4 streams, each model
    carrying its own state: one differing rounding would carry on and show."""
    actor = gru_actor(bits)
    model = integer.extract(actor, ObsNorm.identity(3))
    xs = (np.random.default_rng(bits).normal(size=(150, 4, 3)) * 2).astype(np.float32)
    ref = integer.reference_sequence(actor, model, xs)
    state = model.initial_state(4)
    for x, want in zip(xs, ref):
        outs = model.run_int(model.quantize_normalized(x), state)
        state = model.next_state(outs)
        assert len(outs) == len(want) == 1 + len(integer.ENCODER_PARTS) + actor.cfg.depth + 1
        for got, w in zip(outs, want):
            np.testing.assert_array_equal(got, w)
    states = np.array([model.next_state(r) for r in ref])
    assert np.unique(states).size >= 2**bits // 2  # the state moves over its grid: a real check
    assert integer.agreement(actor, model, [xs[:, i] for i in range(4)]) > 0.9


def test_recurrent_model_round_trips_and_version_1_still_loads(tmp_path):
    actor = gru_actor(3)
    model = integer.extract(actor, ObsNorm.identity(3))
    model.save(tmp_path)
    assert json.loads((tmp_path / "integer.json").read_text())["version"] == 2
    loaded = integer.IntegerModel.load(tmp_path)
    x = np.random.default_rng(0).normal(size=(20, 5, 3)).astype(np.float32)
    for engine in (model, loaded):
        policy = engine.policy()
        engine.actions = np.array([policy(step) for step in x])
    np.testing.assert_array_equal(loaded.actions, model.actions)
    with pytest.raises(QsearchError, match="needs its state"):
        loaded.run_int(loaded.quantize_normalized(x[0]))

    mlp = QuantActor(3, 1, PolicyConfig(width=8, quant=QuantBits()))
    mlp.quant_forward(torch.randn(8, 3))
    mlp.freeze_scales()
    old = integer.extract(mlp.eval(), ObsNorm.identity(3))
    old.save(tmp_path)  # as version 1 wrote it: no encoder entry
    meta = json.loads((tmp_path / "integer.json").read_text())
    del meta["encoder"]
    (tmp_path / "integer.json").write_text(json.dumps({**meta, "version": 1}))
    v1 = integer.IntegerModel.load(tmp_path)
    assert not v1.recurrent and np.array_equal(v1.act(x[0]), old.act(x[0]))
    (tmp_path / "integer.json").write_text(json.dumps({**meta, "version": 4}))
    with pytest.raises(QsearchError, match="version 4"):
        integer.IntegerModel.load(tmp_path)
