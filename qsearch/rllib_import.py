"""`qsearch import`: an RLlib checkpoint of qsearch's PPO module -> a policy bundle.

What is taken: the learner's module (the trained actor, not an env runner's inference copy), the
training configuration the module carries in its model_config, and the observation normalization
from the env runner's MeanStdFilter state. Anything else is refused in one line.

A checkpoint is untrusted input, and its three files read here are pickles: each is read by one
restricted unpickler that admits only the globals a genuine checkpoint of QuantPPOModule references
(ADMITTED), so a crafted pickle is refused before any of its code runs.
"""
from __future__ import annotations

import pickle
from pathlib import Path

from qsearch import bundle as bundles
from qsearch.config import TrainConfig
from qsearch.errors import QsearchError
from qsearch.quant import integer
from qsearch.rl.common import EVAL_SEED_OFFSET
from qsearch.rl.envs import action_bias, action_scale, make_env

MODULE_DIR = "learner_group/learner/rl_module/default_policy"
FILTER_STATE = "env_runner/env_to_module_connector/MeanStdFilter/state.pkl"

# Every global the three pickles of a genuine checkpoint reference (RLlib 2.60's cloudpickle, protocol 5,
# numpy 2; listed with a recording find_class over QAT and FP32 checkpoints written by ppo.train).
# Anything else, os.system or builtins.exec among them, is refused before it is looked up.
ADMITTED = frozenset({
    # numpy arrays (the weights, the filter's statistics, Box's bounds): protocol 5 rebuilds them from bytes
    ("numpy", "dtype"),
    ("numpy._core.numeric", "_frombuffer"),
    # module_state.pkl: the module's state_dict is an OrderedDict of arrays
    ("collections", "OrderedDict"),
    # class_and_ctor_args.pkl: {"class": QuantPPOModule, "ctor_args_and_kwargs": ((), {spaces, model_config
    # (plain dicts, the TrainConfig as a dict), catalog_class})}
    ("qsearch.rl.ppo_module", "QuantPPOModule"),
    ("ray.rllib.algorithms.ppo.ppo_catalog", "PPOCatalog"),
    ("gymnasium.spaces.box", "Box"),
    # ... and each Box carries its random generator (PCG64 from a SeedSequence)
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
})


class RefusedPickle(QsearchError):
    """A checkpoint pickle that references a global outside ADMITTED: refused before it is looked up."""


class _CheckpointUnpickler(pickle.Unpickler):
    """pickle.Unpickler admitting only ADMITTED: every global a pickle names (GLOBAL, STACK_GLOBAL,
    INST, OBJ and copyreg extensions) passes through find_class, and a persistent id is refused by
    pickle.Unpickler itself."""

    def __init__(self, f, file: Path):
        super().__init__(f)
        self.file = file

    def find_class(self, module: str, name: str):
        if (module, name) not in ADMITTED:
            raise RefusedPickle(f"{self.file}: refuses to load {module}.{name}: not among what a checkpoint of "
                                "qsearch's PPO module holds (unpickling it could run code)")
        return super().find_class(module, name)


def read_checkpoint(path: Path):
    """(TrainConfig, trained QuantActor, ObsNorm) from an RLlib algorithm checkpoint of QuantPPOModule."""
    from qsearch.rl.ppo import actor_from_state, connector_norm
    from qsearch.rl.ppo_module import TRAIN_CONFIG, QuantPPOModule

    path = Path(path)
    if not (path / "rllib_checkpoint.json").is_file():
        raise QsearchError(f"{path} is not an RLlib checkpoint (no rllib_checkpoint.json)")
    module_dir = path / MODULE_DIR
    if not (module_dir / "class_and_ctor_args.pkl").is_file():
        raise QsearchError(f"{path} is not an RLlib algorithm checkpoint with a single-agent learner module")
    try:
        spec = _load(module_dir / "class_and_ctor_args.pkl")
    except Exception as e:
        raise _unreadable(path, e) from None
    if not isinstance(spec, dict) or spec.get("class") is not QuantPPOModule:
        name = getattr(spec.get("class"), "__name__", "?") if isinstance(spec, dict) else "?"
        raise QsearchError(f"{path} holds a {name}, not qsearch's PPO module ({QuantPPOModule.__name__}); "
                           "only those can be imported")
    try:
        kwargs = spec["ctor_args_and_kwargs"][1]
        cfg = TrainConfig.from_dict(kwargs["model_config"][TRAIN_CONFIG])
        obs_dim, act_dim = kwargs["observation_space"].shape[0], kwargs["action_space"].shape[0]
        actor = actor_from_state(_load(module_dir / "module_state.pkl"), obs_dim, act_dim, cfg.policy)
        norm = connector_norm({"MeanStdFilter": _load(path / FILTER_STATE)})
    except Exception as e:
        raise _unreadable(path, e) from None
    if norm.mean.shape != (obs_dim,):
        raise QsearchError(f"{path}: the normalization has {norm.mean.shape} dimensions, the policy {obs_dim} inputs")
    return cfg, actor, norm


def import_checkpoint(path: Path, out: Path, episodes: int = 10, force: bool = False) -> bundles.Bundle:
    from qsearch import pipeline

    bundles.check_destination(Path(out), force)
    cfg, actor, norm = read_checkpoint(path)
    env = make_env(cfg.env_id, cfg.seed)
    scale, bias = action_scale(env.action_space), action_bias(env.action_space)
    env.close()
    actor.freeze_scales()
    model = integer.extract(actor, norm) if actor.quantized else None
    b = bundles.Bundle(cfg, actor, norm, scale, bias, model)
    b.evaluation = pipeline.evaluate_bundle(b, episodes, seed=cfg.seed + EVAL_SEED_OFFSET)
    b.evaluation["imported_from"] = str(Path(path).resolve())
    bundles.write(b, Path(out), force=force)
    return b


def _unreadable(path: Path, e: Exception) -> QsearchError:
    """A damaged checkpoint, or one whose weights do not fit its configuration: one line, no traceback."""
    if isinstance(e, RefusedPickle):
        return e
    if isinstance(e, QsearchError):
        return QsearchError(f"{path} cannot be imported: {e}")
    first = str(e).splitlines()[0] if str(e) else ""
    return QsearchError(f"{path} cannot be imported: {type(e).__name__}: {first}")


def _load(file: Path):
    """One of the checkpoint's pickles, through the restricted unpickler: nothing else unpickles here."""
    with open(file, "rb") as f:
        return _CheckpointUnpickler(f, file).load()
