"""Logic-circuit policies: the LUT layer's lookup and its gradients (DWN's extended finite difference)
against a slow reference written as torch-dwn's CUDA kernel loops, the thermometer at its thresholds,
the LUT actor learning a regression, and its integer model equal to it bit for bit."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qsearch import bundle as bundles
from qsearch import pipeline
from qsearch.deploy import export, ptq
from qsearch.deploy.json_export import read_json
from qsearch.errors import QsearchError
from qsearch.quant.integer import IntegerModel
from qsearch.config import FieldError, PolicyConfig, QuantBits, SACConfig, TrainConfig
from qsearch.obs_norm import ObsNorm
from qsearch.quant import fastpath, lut_integer
from qsearch.quant.lut import LUTLayer, gaussian_thresholds, thermometer
from qsearch.quant.lut_actor import LUTActor


def slow_layer(bits, tables, mapping, alpha, beta, g):
    """torch-dwn 1.1.1's efd_cuda_forward / efd_cuda_backward kernels, loop for loop."""
    batch, (nodes, size), k = bits.shape[0], tables.shape, mapping.shape[1]
    out = torch.zeros(batch, nodes, dtype=torch.float64)
    d_bits, d_tables = torch.zeros(bits.shape, dtype=torch.float64), torch.zeros(tables.shape, dtype=torch.float64)
    for i in range(batch):
        for j in range(nodes):
            addr = sum(int(bits[i, mapping[j, l]] > 0) << l for l in range(k))
            out[i, j] = tables[j, addr]
            d_tables[j, addr] += g[i, j]
            for l in range(k):
                w = 0.0
                for addr2 in range(size):
                    dist = bin((addr & ~(1 << l)) ^ (addr2 & ~(1 << l))).count("1")
                    fd = float(tables[j, addr2]) * alpha * beta**dist
                    w += fd if (addr2 >> l) & 1 else -fd
                d_bits[i, mapping[j, l]] += w * g[i, j]
    return out, d_bits, d_tables


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_lookup_and_gradients_equal_the_reference(k):
    torch.manual_seed(k)
    layer = LUTLayer(input_size=9, nodes=5, k=k)
    bits = (torch.rand(4, 9) > 0.5).float().requires_grad_()
    g = torch.randn(4, 5)
    y = layer(bits)
    (y * g).sum().backward()
    ref_out, ref_bits, ref_tables = slow_layer(bits.detach(), layer.tables.detach(), layer.mapping,
                                               0.5 * 0.75 ** (k - 1), 1 / 3, g)
    assert torch.equal(y, (ref_out > 0).float())
    assert torch.allclose(layer.tables.grad.double(), ref_tables, atol=1e-6)
    assert torch.allclose(bits.grad.double(), ref_bits, rtol=1e-5, atol=1e-6)


def test_a_learnable_mapping_reads_the_argmax_and_passes_gradients_through_the_softmax():
    torch.manual_seed(0)
    layer = LUTLayer(input_size=6, nodes=3, k=2, mapping="learnable", tau=0.5)
    bits = (torch.rand(4, 6) > 0.5).float().requires_grad_()
    g = torch.randn(4, 3)
    (layer(bits) * g).sum().backward()
    chosen = layer.connections()
    assert torch.equal(chosen.reshape(-1), layer.scores.argmax(0))
    out, d_selected, d_tables = slow_layer(bits.detach()[:, chosen.reshape(-1)], layer.tables.detach(),
                                           torch.arange(6).reshape(3, 2), 0.5 * 0.75, 1 / 3, g)
    soft = torch.softmax(layer.scores.detach() / 0.5, 0).double()
    assert torch.allclose(bits.grad.double(), d_selected @ soft.T, rtol=1e-5, atol=1e-6)
    assert torch.allclose(layer.scores.grad.double(), (2 * bits.detach().double() - 1).T @ d_selected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(layer.tables.grad.double(), d_tables, atol=1e-6)


def test_random_mappings_cover_the_inputs_evenly():
    mapping = LUTLayer(input_size=10, nodes=7, k=3).mapping
    counts = torch.bincount(mapping.reshape(-1), minlength=10)
    assert mapping.shape == (7, 3) and counts.min() >= 2 and counts.max() <= 3


def test_thermometer_levels_count_the_thresholds_reached_edges_included():
    t = gaussian_thresholds(3)
    assert torch.allclose(t, torch.tensor([-0.6745, 0.0, 0.6745]), atol=1e-4)  # quartiles of N(0, 1)
    x = torch.stack([t - 1e-6, t, t + 1e-6], 0)  # (3, 3): just below, at, just above each threshold
    levels = thermometer(x, t).reshape(3, 3, 3).sum(-1)
    assert levels.tolist() == [[0, 1, 2], [1, 2, 3], [1, 2, 3]]


def lut_policy(thermometer_bits: int, luts: tuple, lut_inputs: int, mapping: str = "random", bits_out: int = 8):
    return PolicyConfig(kind="lut", thermometer_bits=thermometer_bits, luts=luts, lut_inputs=lut_inputs,
                        mapping=mapping, quant=QuantBits(bits_out=bits_out))


def _trained(actor: LUTActor, target: torch.Tensor, updates: int, batch: int) -> LUTActor:
    """actor fitted to tanh(x target) on standard normal x by Adam, then in eval mode."""
    optimizer = torch.optim.Adam(actor.parameters(), lr=1e-2)
    for _ in range(updates):
        actor.train()
        x = torch.randn(batch, target.shape[0])
        loss = (actor(x) - torch.tanh(x @ target)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return actor.eval()


def test_a_lut_actor_learns_a_regression_and_its_output_is_on_the_output_grid():
    """Thermometer, two LUT layers and the integer head fit tanh(x W) well past the constant guess."""
    torch.manual_seed(0)
    target = torch.randn(3, 2)
    actor = LUTActor(3, 2, lut_policy(8, (96, 64), 4, bits_out=6))
    actor = _trained(actor, target, updates=400, batch=256)
    x = torch.randn(512, 3)
    with torch.no_grad():
        out = actor(x)
    baseline = float(torch.tanh(x @ target).var(0).mean())  # the best constant's loss
    assert float((out - torch.tanh(x @ target)).square().mean()) < 0.2 * baseline  # measured 0.05-0.07 of it, seeds 0-2
    assert fastpath.ready(actor)  # the output quantizer left its warm-up and kept a learned range
    levels = out / (fastpath.scaling_impl(actor.out).value.abs() / 2**5)
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= 2**5


def test_a_lut_actor_refuses_fewer_nodes_than_actions():
    with pytest.raises(FieldError, match="fewer than the 3 actions"):
        LUTActor(3, 3, lut_policy(4, (8, 2), 2))


def _trained_actor(mapping: str, seed: int = 0) -> LUTActor:
    torch.manual_seed(seed)
    actor = LUTActor(3, 2, lut_policy(8, (48, 33), 3, mapping, bits_out=5))
    return _trained(actor, torch.randn(3, 2), updates=320, batch=128)  # past the output quantizer's warm-up


@pytest.mark.parametrize("mapping", ["random", "learnable"])
def test_the_integer_model_equals_the_trained_actor_thresholds_edges_included(mapping):
    actor = _trained_actor(mapping)
    model = lut_integer.extract(actor, ObsNorm(np.zeros(3, np.float32), np.ones(3, np.float32)))
    t = actor.thresholds
    edges = torch.stack([t, torch.nextafter(t, t - 1), torch.nextafter(t, t + 1)]).reshape(-1)
    x = torch.cat([torch.randn(2000, 3) * 1.5, edges[torch.randint(0, len(edges), (600, 3))],
                   torch.tensor([[float("nan"), 0.0, 1e9]])])
    with torch.no_grad():
        bits = [thermometer(x, t)]
        for layer in actor.layers:
            bits.append(layer(bits[-1]))
        expected = actor.head(actor.counts(x)).int().numpy()
    outs = model.run_int(model.levels(x.numpy()))
    assert np.array_equal(outs[0], thermometer(x, t).reshape(len(x), 3, -1).sum(-1).numpy())
    for ours, theirs in zip(outs[1:-2], bits[1:]):
        assert np.array_equal(ours, theirs.numpy())
    assert np.array_equal(outs[-1], expected)
    assert len(np.unique(outs[-1])) > 4  # not a constant policy
    with torch.no_grad():
        assert np.abs(model.act(x.numpy()) - torch.tanh(actor(x)).numpy()).max() < 1e-4


@pytest.fixture(scope="module")
def pendulum_bundle(tmp_path_factory):
    """SAC with a LUT policy, 5,000 steps, ~30 s, through pipeline.run: a bundle with its integer model."""
    cfg = TrainConfig(env_id="InvertedPendulum-v5", algo="sac", total_steps=5000, seed=1, eval_every=1000, eval_episodes=3,
                      policy=lut_policy(16, (96, 96), 4),
                      algo_config=SACConfig(learning_starts=1000, critic_width=64, batch_size=128, buffer_size=5000))
    return pipeline.run(cfg, tmp_path_factory.mktemp("lut") / "bundle", episodes=3)


def test_sac_trains_a_lut_policy_that_visibly_learns_inverted_pendulum(pendulum_bundle):
    """Evaluations at 1k-5k steps measured 2, 57, 137, 142, 504 (seeds 0 and 2: best 86 and 136); a
    random policy holds the pole for ~5 steps."""
    returns = [row["eval_return_mean"] for row in pendulum_bundle.history]
    assert isinstance(pendulum_bundle.actor, LUTActor) and len(returns) == 5
    assert returns[0] < 20 and max(returns[1:]) > 100, returns


def test_a_lut_bundle_reads_back_and_its_integer_engine_acts_as_the_trained_policy(pendulum_bundle, tmp_path):
    ev = pendulum_bundle.evaluation
    assert ev["agreement"]["equal_outputs"] == 1.0 and ev["agreement"]["observations"] > 10
    # (the two engines' returns differ: tanh by table and in float32 differ by ~1e-4, and a pendulum's
    # episodes part ways from there)
    b = bundles.read(pendulum_bundle.path)
    assert isinstance(b.integer, lut_integer.IntLUTModel)
    assert json.loads((b.path / "integer.json").read_text())["version"] == 3
    x = np.random.default_rng(0).normal(size=(500, 4)).astype(np.float32) * 2
    assert np.array_equal(b.integer.act(x), pendulum_bundle.integer.act(x))
    assert np.array_equal(b.policy("torch")(x), pendulum_bundle.policy("torch")(x))
    with pytest.raises(QsearchError, match="lut model, not a network's"):
        IntegerModel.load(b.path)
    export.export(str(b.path), "json", tmp_path / "json")
    again = read_json(tmp_path / "json" / "policy.json")
    assert json.loads((tmp_path / "json" / "policy.json").read_text())["version"] == 3
    assert np.array_equal(again.run_int(again.levels(x))[-1], b.integer.run_int(b.integer.levels(x))[-1])


@pytest.mark.parametrize("fmt, what", [("qonnx", "QONNX export"), ("finn", "FINN's dataflow")])
def test_network_only_exports_refuse_a_lut_policy_in_one_line(pendulum_bundle, tmp_path, fmt, what):
    with pytest.raises(QsearchError, match=f"logic-circuit \\(LUT\\) policy: {what} takes networks only"):
        export.export(str(pendulum_bundle.path), fmt, tmp_path / fmt)
    assert not (tmp_path / fmt).exists()
    with pytest.raises(QsearchError, match="PTQ takes networks only"):
        ptq.ptq(str(pendulum_bundle.path), tmp_path / "ptq", bits_in=8, bits_core=3)


def test_a_lut_policy_registers_as_an_mlflow_model_with_its_c(pendulum_bundle, tmp_path, monkeypatch):
    import mlflow

    from qsearch.trial_record import BUNDLE_ARTIFACT

    monkeypatch.setenv("QSEARCH_CACHE", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("luts", artifact_location=str(tmp_path / "art"))).info.run_id
    client.log_param(run_id, "env_id", "InvertedPendulum-v5")
    client.log_artifacts(run_id, str(pendulum_bundle.path), BUNDLE_ARTIFACT)
    client.set_terminated(run_id)
    assert "registered model luts-InvertedPendulum-v5 version 1" in "\n".join(export.export(run_id, "mlflow", None, uri))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    model = mlflow.pyfunc.load_model("models:/luts-InvertedPendulum-v5/1")
    b = pendulum_bundle
    obs = (np.random.default_rng(0).normal(0, 2, (300, 4)) * b.obs_norm.std + b.obs_norm.mean).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs), b.integer.act(b.obs_norm(obs)) * b.action_scale + b.action_bias)
    local = Path(mlflow.artifacts.download_artifacts("models:/luts-InvertedPendulum-v5/1", dst_path=str(tmp_path / "dl")))
    names = {p.name for p in local.rglob("*")}
    assert {"qpolicy.c", "qpolicy_model.h", "bundle.json"} <= names and "policy.onnx" not in names
