"""Bundle round trip, and refusal of foreign or damaged folders."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from qsearch import bundle as bundles
from qsearch.config import QuantBits
from qsearch.errors import QsearchError
from qsearch.quant import integer
from policies import make_bundle, warmed_actor


@pytest.mark.parametrize("quantized", [True, False])
def test_round_trip(tmp_path, rng, quantized):
    b = make_bundle(rng, quantized)
    out = bundles.write(b, tmp_path / "bundle")
    loaded = bundles.read(out)
    assert loaded.config == b.config and loaded.evaluation == b.evaluation and loaded.history == b.history
    made = json.loads((out / "bundle.json").read_text())["machine"]  # where it was made
    assert made["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and made["versions"]["torch"]
    state = torch.load(out / "actor.pt", weights_only=True)  # plain tensors, no pickled objects
    assert state.keys() == b.actor.state_dict().keys()
    x = rng.normal(0, 2, (256, 11)).astype(np.float32)
    np.testing.assert_array_equal(loaded.policy("torch")(x), b.policy("torch")(x))
    if quantized:
        np.testing.assert_array_equal(loaded.policy("int")(x), b.policy("int")(x))
        assert loaded.actor.quantized
    else:
        assert not (out / "integer.npz").exists()
        with pytest.raises(QsearchError, match="no integer model"):
            loaded.policy("int")


def test_refuses_to_overwrite(tmp_path, rng):
    b = make_bundle(rng)
    bundles.write(b, tmp_path / "b")
    with pytest.raises(QsearchError, match="--force"):
        bundles.write(b, tmp_path / "b")
    bundles.write(b, tmp_path / "b", force=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(QsearchError, match="not an empty folder"):
        bundles.write(b, tmp_path / "other", force=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "other"]  # no temporary folders left


def test_foreign_and_damaged_folders(tmp_path, rng):
    with pytest.raises(QsearchError, match="not a folder"):
        bundles.read(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(QsearchError, match="bundle.json is missing"):
        bundles.read(tmp_path / "empty")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "bundle.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(QsearchError, match="format marker"):
        bundles.read(foreign)
    (foreign / "bundle.json").write_text("{not json")
    with pytest.raises(QsearchError, match="unreadable"):
        bundles.read(foreign)
    out = bundles.write(make_bundle(rng), tmp_path / "damaged")
    (out / "actor.pt").write_bytes(b"garbage")
    with pytest.raises(QsearchError, match="damaged"):
        bundles.read(out)


def test_actor_saved_during_warmup_reloads_identically(tmp_path, rng):
    """Fewer than 300 updates: the moving statistics must become the saved scales."""
    actor = warmed_actor(QuantBits(4, 3, 3, 8), updates=50)
    x = torch.from_numpy(rng.normal(0, 2, (256, 11)).astype(np.float32))
    with torch.no_grad():
        before = actor.eval()(x)
    actor.freeze_scales()
    with torch.no_grad():
        assert torch.equal(actor(x), before)
    b = make_bundle(rng)
    b.actor, b.integer = actor, integer.extract(actor, b.obs_norm)
    b.config = dataclasses.replace(b.config, policy=actor.cfg)
    loaded = bundles.read(bundles.write(b, tmp_path / "b"))
    with torch.no_grad():
        assert torch.equal(loaded.actor(x), before)
