"""The trial record in a real MLflow store: every field round-trips, identity keys survive a new
parameter, a store written before the record was versioned is still read, a newer one is refused,
reads page through the store, and a missing store is never created by a read. Writes wait out a
stopped tracking server (a real `mlflow server` stopped and started again): nothing lost or doubled,
training never held up, and a store gone for good fails the write in one line."""
import dataclasses
import json
import time

import pytest
import torch

from qsearch import tracking
from qsearch import trial_record as record
from qsearch.config import PolicyConfig, QuantBits, SACConfig, TrainConfig
from qsearch.errors import QsearchError
from services import free_port, sqlite_store, start_mlflow, stop

ENV = "InvertedPendulum-v5"
CFG = TrainConfig(env_id=ENV, policy=PolicyConfig(width=64, depth=2, quant=QuantBits(4, 2, 2, 8)), total_steps=4000,
                  seed=1, eval_every=2000, eval_episodes=2,
                  algo_config=SACConfig(learning_starts=500, batch_size=64))
LABEL = f"{ENV}/i4w2a2o8/h64x2"

# What qsearch wrote for CFG before the record had a version or a key (the trainable's trial_params of
# that time, as MLflow stored it): the encoding must keep reading exactly this.
BEFORE_VERSIONS = {
    "env_id": ENV, "algo": "sac", "fp32": "False", "bits_in": "4", "bits_weight": "2", "bits_act": "2",
    "bits_out": "8", "width": "64", "depth": "2", "seed": "1", "steps": "4000", "eval_every": "2000",
    "eval_episodes": "2", "final_episodes": "3", "configuration": LABEL,
    "algo_config.buffer_size": "1000000", "algo_config.gamma": "0.99", "algo_config.tau": "0.005",
    "algo_config.batch_size": "64", "algo_config.learning_starts": "500", "algo_config.policy_lr": "0.0003",
    "algo_config.q_lr": "0.001", "algo_config.policy_frequency": "2", "algo_config.target_network_frequency": "1",
    "algo_config.alpha": "0.2", "algo_config.autotune": "True", "algo_config.critic_width": "256",
    "algo_config.sigma_width": "64",
}


@pytest.fixture
def store(tmp_path):
    uri = tracking.default_uri(tmp_path)
    exp = tracking.experiment(uri, "record-test", tmp_path)
    return uri, exp, record.start_search(uri, exp, "record-test", {"steps": 4000})


def write_trial(uri, exp, parent, params, final=950.0, trial_id="t0", bundle=None):
    c, run = record.start_trial(uri, exp, parent, trial_id, "a trial", params)
    tracking.log_metrics(c, run, {record.EVAL_RETURN: final / 2}, 2000)
    if bundle is not None:
        record.finish_trial(c, run, {record.FINAL_RETURN: final, "cost": 128}, 4000, str(bundle))
    else:
        tracking.log_metrics(c, run, {record.FINAL_RETURN: final}, 4000)
    record.end_trial(c, run)
    return run


def test_a_trial_round_trips(store, tmp_path):
    uri, exp, parent = store
    params = record.trial_params(CFG, LABEL, 3)
    # the encoding is the one earlier stores hold, plus params introduced since, which leave the key as it was
    assert params == {**BEFORE_VERSIONS, "observe": "all", "encoder": "none", "policy": "mlp"}
    assert record.trial_key(params) == record.trial_key(BEFORE_VERSIONS)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bundle.json").write_text("{}")
    run = write_trial(uri, exp, parent, params, bundle=tmp_path / "b")

    [t] = record.read_trials(uri)
    assert (t.run_id, t.params, t.final_return) == (run, params, 950.0)
    assert (t.env_id, t.configuration, t.seed, t.fp32, t.width) == (ENV, LABEL, 1, False, 64)
    assert [t.bits(p) for p in ("in", "weight", "act", "out")] == [4, 2, 2, 8]
    c = tracking.client(uri)
    r = c.get_run(run)
    assert r.data.tags[record.KEY_TAG] == t.key == record.trial_key(params)
    assert r.data.tags[record.VERSION_TAG] == str(record.RECORD_VERSION)
    assert r.data.tags[record.PARENT_TAG] == parent and r.data.tags[record.KIND_TAG] == record.TRIAL
    # where it ran: a result that differs between machines can be told apart from a mistake
    assert r.data.tags[record.MACHINE_TAGS["cpu_capability"]] == torch.backends.cpu.get_cpu_capability()
    assert r.data.tags[record.MACHINE_TAGS["cpu"]]
    assert json.loads(r.data.tags[record.MACHINE_TAGS["versions"]])["torch"] == torch.__version__
    assert r.data.metrics["cost"] == 128 and r.info.status == "FINISHED"
    assert record.eval_history(c, run) == {2000: 475.0}
    assert [f.path for f in c.list_artifacts(run, record.BUNDLE_ARTIFACT)] == ["bundle/bundle.json"]
    assert record.Index([t]).find(params) == t


def test_the_key_ignores_the_label_and_tells_trials_apart():
    params = record.trial_params(CFG, LABEL, 3)
    assert record.trial_key({**params, "configuration": "renamed"}) == record.trial_key(params)
    other_seed = record.trial_params(TrainConfig(**{**vars(CFG), "seed": 2}), LABEL, 3)
    assert record.trial_key(other_seed) != record.trial_key(params)


def test_a_recurrent_trial_records_its_encoder_and_its_sequence_settings():
    gru = PolicyConfig(width=64, depth=2, quant=QuantBits(4, 2, 2, 8), encoder="gru", encoder_width=32)
    params = record.trial_params(TrainConfig(**{**vars(CFG), "policy": gru}), LABEL, 3)
    assert (params["encoder"], params["encoder_width"]) == ("gru", "32")
    assert (params["algo_config.sequence_length"], params["algo_config.burn_in"]) == ("16", "8")
    assert record.trial_key(params) != record.trial_key(record.trial_params(CFG, LABEL, 3))
    # a stateless policy's trial is the same whatever the settings only a recurrent one reads
    longer = TrainConfig(**{**vars(CFG), "algo_config": SACConfig(learning_starts=500, batch_size=64, sequence_length=32)})
    assert record.trial_params(longer, LABEL, 3) == record.trial_params(CFG, LABEL, 3)


def test_a_trial_recorded_before_a_new_parameter_is_still_found(store, monkeypatch):
    uri, exp, parent = store
    old = record.trial_params(CFG, LABEL, 3)
    write_trial(uri, exp, parent, old)
    index = record.Index(record.read_trials(uri))
    # A later qsearch adds a hyperparameter whose value 7 is what it did before the parameter existed.
    monkeypatch.setattr(record, "INTRODUCED", {**record.INTRODUCED, "algo_config.new_knob": "7"})
    assert index.find({**old, "algo_config.new_knob": "7"}) is not None
    assert index.find({**old, "algo_config.new_knob": "8"}) is None  # another value is another trial


def test_a_store_written_before_the_record_was_versioned_is_read(store):
    uri, exp, parent = store
    # The runs of that time: kind, parent and trial id tags, no key and no version.
    c = tracking.client(uri)
    run = c.create_run(exp, tags={record.KIND_TAG: record.TRIAL, record.PARENT_TAG: parent,
                                  record.TRIAL_ID_TAG: "old"}).info.run_id
    tracking.log_params(c, run, BEFORE_VERSIONS)
    tracking.log_metrics(c, run, {record.FINAL_RETURN: 900.0}, 4000)
    c.set_terminated(run, "FINISHED")
    found = record.Index(record.read_trials(uri)).find(record.trial_params(CFG, LABEL, 3))
    assert found is not None and found.run_id == run  # reused, not retrained


def test_a_newer_record_is_refused_in_one_line(store):
    uri, exp, parent = store
    run = write_trial(uri, exp, parent, record.trial_params(CFG, LABEL, 3))
    tracking.client(uri).set_tag(run, record.VERSION_TAG, "99")
    with pytest.raises(QsearchError, match="recorded by a newer qsearch") as e:
        record.read_trials(uri)
    assert "\n" not in str(e.value)


def test_reads_page_through_the_store(store):
    uri, exp, parent = store
    for seed in range(5):
        params = record.trial_params(TrainConfig(**{**vars(CFG), "seed": seed}), LABEL, 3)
        write_trial(uri, exp, parent, params, trial_id=f"t{seed}")
    c = tracking.client(uri)
    assert len(tracking.search_all(c, [exp], record.FINISHED_TRIALS, page_size=2)) == 5
    assert len(record.read_trials(uri)) == 5


def test_reads_page_through_the_experiments(store, tmp_path, monkeypatch):
    uri, exp, parent = store
    exps = [exp] + [tracking.experiment(uri, f"more-{i}", tmp_path) for i in range(6)]  # + Default: 8 in all
    # one trial in the first experiment created, one (another seed: another trial) in the last
    runs = [write_trial(uri, exps[i], record.start_search(uri, exps[i], f"s{i}", {"steps": 4000}),
                        record.trial_params(TrainConfig(**{**vars(CFG), "seed": i}), LABEL, 3)) for i in (0, 6)]
    c = tracking.client(uri)
    assert sorted(tracking.all_experiments(c, page_size=3)) == sorted(exps + ["0"])  # 3 pages
    assert len(c.search_experiments(max_results=3)) == 3  # what one page of MLflow's holds
    monkeypatch.setattr(tracking, "EXPERIMENT_PAGE_SIZE", 3)
    assert sorted(t.run_id for t in record.read_trials(uri)) == sorted(runs)


def test_selected_tags_move_with_each_selection(store):
    uri, exp, parent = store
    runs = [write_trial(uri, exp, parent, record.trial_params(TrainConfig(**{**vars(CFG), "seed": s}), LABEL, 3),
                        trial_id=f"t{s}") for s in (0, 1)]
    record.set_selected(uri, [ENV], [runs[0]])
    assert [t.run_id for t in record.selected_trials(uri)] == [runs[0]]
    record.set_selected(uri, [ENV], [runs[1]])  # a later selection of the same environment
    assert [t.run_id for t in record.selected_trials(uri)] == [runs[1]]


def test_reading_a_missing_store_creates_nothing(tmp_path):
    db = tmp_path / "nothing.db"
    with pytest.raises(QsearchError, match="does not exist"):
        record.read_trials(f"sqlite:///{db}")
    assert not db.exists()


def test_writes_wait_out_a_stopped_server_and_nothing_is_lost_or_doubled(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server, _ = start_mlflow(sqlite_store(tmp_path), tmp_path, port, wait=False)  # answers after ~15 s: the search's first writes wait for it
    try:
        parent = record.start_search(url, "0", "outage", {"steps": 3000})
        c, run = record.start_trial(url, "0", parent, "t0", "a trial", {"seed": "0"})
        log = record.ProgressLog(url, c, run)
        log.log({"steps_per_s": 1.0}, 1000)
        assert log.pending == []  # sent

        stop(server)  # SIGTERM: the server exits; nothing listens on the port
        took = []
        for step in (2000, 3000):
            started = time.monotonic()
            log.log({"steps_per_s": step / 1000, record.EVAL_RETURN: step / 10}, step)
            took.append(time.monotonic() - started)
        # One refused attempt, then only the buffer: training goes on (MLflow's own retries would hold
        # each write for minutes).
        assert max(took) < 2, took
        assert [(m.key, m.step) for m in log.pending] == [("steps_per_s", 2000), (record.EVAL_RETURN, 2000),
                                                          ("steps_per_s", 3000), (record.EVAL_RETURN, 3000)]

        server, _ = start_mlflow(sqlite_store(tmp_path), tmp_path, port, log_name="mlflow2.log", wait=False)  # the same port and store
        log.flush()  # waits for the server to answer again, then sends
        assert log.pending == []
        (tmp_path / "bundle").mkdir()
        (tmp_path / "bundle" / "bundle.json").write_text("{}")
        record.finish_trial(c, run, {record.FINAL_RETURN: 9.0}, 3000, str(tmp_path / "bundle"))
        record.end_trial(c, run)
        record.finish_search(url, "0", parent, [9.0], 0, [])

        assert [(m.step, m.value) for m in c.get_metric_history(run, "steps_per_s")] == \
            [(1000, 1.0), (2000, 2.0), (3000, 3.0)]  # every step once, as logged
        assert record.eval_history(c, run) == {2000: 200.0, 3000: 300.0}
        assert c.get_run(run).data.metrics[record.FINAL_RETURN] == 9.0
        assert [f.path for f in c.list_artifacts(run, record.BUNDLE_ARTIFACT)] == ["bundle/bundle.json"]
        assert c.get_run(run).info.status == c.get_run(parent).info.status == "FINISHED"
        # A batch sent twice (the server took it, its answer was lost) is stored once: what makes a
        # retried write safe.
        items = tracking.metric_items({"again": 1.0}, 7)
        for _ in range(2):
            tracking.log_metric_items(c, parent, items)
        assert len(c.get_metric_history(parent, "again")) == 1
    finally:
        stop(server)


def test_a_store_gone_for_longer_than_the_patience_fails_the_write_in_one_line(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setattr(record, "PATIENCE", 3.0)
    c = tracking.client(url)
    log = record.ProgressLog(url, c, "r1")
    log.log({"steps_per_s": 1.0}, 1000)  # buffered: no error while training
    started = time.monotonic()
    with pytest.raises(record.StoreUnreachable) as e:
        log.flush()
    assert time.monotonic() - started >= 3.0  # tried for the whole patience
    assert str(e.value).startswith(f"MLflow tracking store {url} did not answer for 3 s while writing the metrics")
    assert "\n" not in str(e.value)
    with pytest.raises(record.StoreUnreachable, match=f"{url} did not answer for 3 s while ending run r1"):
        record.end_trial(c, "r1")


def test_a_write_the_store_refuses_is_not_retried(store):
    from mlflow.exceptions import MlflowException

    uri, exp, parent = store
    c = tracking.client(uri)
    # Raised as MLflow's refusal, not buffered, nor retried for PATIENCE and then a StoreUnreachable
    with pytest.raises(MlflowException, match="no-such-run"):
        record.ProgressLog(uri, c, "no-such-run").log({"steps_per_s": 1.0}, 1000)
    with pytest.raises(MlflowException, match="no-such-run"):
        record.end_trial(c, "no-such-run")


def test_a_lut_policy_records_its_settings_and_an_mlp_none_of_them():
    lut = dataclasses.replace(CFG, policy=PolicyConfig(kind="lut", luts=(64, 32), lut_inputs=4, mapping="random",
                                                       quant=QuantBits(bits_out=6)))
    params = record.trial_params(lut, "lut 64-32", 3)
    assert {k: params[k] for k in ("policy", "thermometer_bits", "luts", "lut_inputs", "mapping")} == \
        {"policy": "lut", "thermometer_bits": "16", "luts": "64,32", "lut_inputs": "4", "mapping": "random"}
    assert not {"thermometer_bits", "luts", "lut_inputs", "mapping"} & set(record.trial_params(CFG, LABEL, 3))
    assert record.trial_key(params) != record.trial_key(record.trial_params(CFG, "lut 64-32", 3))
