"""Shared test fixtures."""

import keras
import numpy as np
import pytest
from cli import CliSession  # (tests/cli.py)

from mwnet_tf.data import Dataset


@pytest.fixture
def float64():
    """Keras floatx and dtype policy float64 for the test, both restored afterwards (a
    global policy another test left set would otherwise override floatx)."""
    old, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(old)
    keras.config.set_dtype_policy(old_policy)


@pytest.fixture
def synthetic_dataset():
    """Factory of small random `Dataset`s: `make(per_class, num_classes=10, shape=(8, 8, 3))`.

    Class c has `per_class[c]` (or `per_class`) training images; `coarse=True` adds coarse
    labels (fine class // 5).
    """
    def make(per_class=40, num_classes=10, shape=(8, 8, 3), test_per_class=3, augment=False,
             coarse=False, seed=0):
        rng = np.random.default_rng(seed)
        counts = np.broadcast_to(per_class, (num_classes,))
        train_y = np.repeat(np.arange(num_classes), counts)
        rng.shuffle(train_y)
        test_y = np.repeat(np.arange(num_classes), test_per_class)
        return Dataset(
            name="synthetic",
            train_x=rng.integers(0, 256, (len(train_y), *shape), dtype=np.uint8),
            train_y=train_y.astype(np.int64),
            test_x=rng.integers(0, 256, (len(test_y), *shape), dtype=np.uint8),
            test_y=test_y.astype(np.int64), num_classes=num_classes,
            mean=(0.5,) * shape[-1], std=(0.25,) * shape[-1], augment=augment,
            train_coarse=(train_y // 5).astype(np.int64) if coarse else None)
    return make


@pytest.fixture(scope="module")
def cli():
    """`cli.run(*args, **env)`: `python -m mwnet_tf.train ARGS` through one TensorFlow import
    for the module's tests (`tests/cli.py`, `CliSession`)."""
    session = CliSession()
    yield session
    session.close()


# The modules that take longest, longest first (measured with `--durations=0` on 2 cores,
# 2026-11-27; the multi-worker and signal tests also keep the second core busy). pytest-xdist
# hands out whole files in collection order when run with `--no-loadscope-reorder` (the
# README's test command), so no long module starts last while the other worker idles; the
# rest follow in their usual order.
LONGEST_FIRST = ("test_multi_worker.py", "test_label_order_cli.py", "test_preemption.py",
                 "test_jit.py", "test_train.py",
                 "test_bench.py", "test_methods_cli.py", "test_mirrored.py",
                 "test_catalogue.py", "test_export.py", "test_clothing1m.py",
                 "test_figures.py", "test_steps.py", "test_docs.py")


# The fast tier, `pytest -m "not e2e and not slow"`, leaves out what runs a program or a
# training end to end. The marker is given here, in one place, rather than in each file:
# every test of the modules below (command lines in subprocesses, several processes, whole runs) ...
E2E_MODULES = ("test_multi_worker.py", "test_preemption.py", "test_train.py",
               "test_mirrored.py", "test_catalogue.py", "test_methods_cli.py",
               "test_own_data_cli.py", "test_label_order_cli.py", "test_meta_source_cli.py")
# ... and, in the other modules, the tests that run a command, train a method for whole
# epochs, build a full-size model (ResNet-32/50, WRN-28-10) or compile with XLA: each takes
# seconds or more on 2 cores. A name matches its parametrized variants too.
E2E_TESTS = {
    "test_bench.py": ("test_command_writes_loop_and_memory_to_json",
                      "test_benchmark_times_each_variant_and_the_loop_at_each_steps_per_call"),
    "test_cifar_files.py": ("test_human_noise_end_to_end_through_the_command_line",),
    "test_clothing1m.py": ("test_one_epoch_through_the_command_line",
                           "test_pretrained_legacy_h5_loads_by_name_and_keeps_the_head"),
    "test_config.py": ("test_bare_command_runs_table3_protocol_and_flags_override",
                       "test_table4_flagfile_is_clothing1ms_paper_defaults"),
    "test_export.py": ("test_saved_model_cli_runs_the_export",
                       "test_a_weight_function_from_elsewhere_is_read_as_data_not_run",
                       "test_bad_weight_fn_paths_are_one_line_errors_with_exit_2",
                       "test_frozen_weight_function_trains_without_meta_step_or_meta_set"),
    "test_docs.py": ("test_python_block_runs_and_prints_what_the_page_shows",),
    "test_example.py": ("test_the_worked_example_runs_as_the_docs_write_it",),
    "test_figures.py": ("test_plot_command_writes_every_figure",
                        "test_a_run_missing_what_a_figure_needs_is_one_line"),
    "test_keras_file.py": ("test_a_planted_module_is_never_imported_by_train_or_predict",),
    "test_keras_model.py": ("test_fit_takes_the_same_steps_as_the_projects_step",
                            "test_keras_callbacks_run"),
    "test_methods_confident_learning.py": (
        "test_resumed_run_keeps_the_folds_done_and_their_kept_mask",),
    "test_methods_glc_coteaching.py": ("test_glc_runs_through_the_trainer_and_saves_the_matrix",
                                       "test_co_teaching_runs_through_the_trainer"),
    "test_methods_losses.py": ("test_method_trains_two_epochs_on_digits_and_writes_results",),
    "test_methods_meta.py": ("test_l2rw_trains_on_digits_and_writes_results",
                             "test_fine_tune_second_phase_sees_only_meta_data"),
    "test_models.py": ("test_same_seed_same_weights_different_seed_different_weights",
                       "test_resnet50_count_batch_norm_and_seeded_initializers",
                       "test_parameter_counts_of_small_models[resnet32",
                       "test_wrn28_10_has_the_pytorch_parameter_count",
                       "test_kaiming_normal_inits_as_in_the_authors_code",
                       "test_batch_norm_matches_pytorch_and_synchronizes_on_request[resnet32",
                       "test_resnet32_saves_and_loads_in_keras_safe_mode"),
    "test_precision.py": ("test_meta_gradient_agrees_with_float32",),
    "test_predict.py": ("test_command_writes_predictions_and_fails_in_one_line",
                        "test_help_exits_0_without_tensorflow",
                        "test_bad_flags_are_one_line_exit_2_and_a_run_prints_no_start_up"),
    "test_serving.py": (
        "test_export_writes_the_keras_file_the_spec_and_a_saved_model_served_by_the_cli",),
    "test_finish.py": ("test_finish_run_after_a_run_then_predict_the_test_set",),
    "test_steps.py": ("test_xla_compiled_step_matches_the_plain_graph_step",),
    "test_own_data.py": ("test_distribute_datasets_from_function_under_mirrored_strategy",),
    "test_jit.py": ("test_xla_step_matches_the_graph_step[mwnet-cnn]",),
    "test_defaults.py": ("test_own_data_with_two_epochs_trains_and_writes_paths_relative_to",),
}


def _is_e2e(item) -> bool:
    module = item.path.name
    return module in E2E_MODULES or item.name.startswith(E2E_TESTS.get(module, ()))


def pytest_collection_modifyitems(items):
    for item in items:
        if _is_e2e(item):
            item.add_marker(pytest.mark.e2e)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a module
