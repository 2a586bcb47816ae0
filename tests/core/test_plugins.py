"""Plugin discovery and loading: entry points, --plugin, no:NAME, ESQ_PLUGINS, failures."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from esq import PluginError
from esq.plugins import load_plugins

FAKE = str(Path(__file__).with_name("fake_plugin.py"))

QUANTIZER_PLUGIN = """
from esq import QuantizerSpec, hookimpl

def build(input_dim):
    return input_dim

@hookimpl
def esq_quantizers():
    return [QuantizerSpec(name="{name}", factory=build, summary="A test quantizer")]
"""


def by_name(plugins, name):
    return next(info for info in plugins.infos if info.name == name)


def test_entry_point_plugin_is_found_with_its_distribution_and_version(install_plugin):
    install_plugin("esq-acme", "1.2.3", "acme_plugin", QUANTIZER_PLUGIN.format(name="acme"))
    plugins = load_plugins()
    spec = plugins.registry("quantizers").spec("acme")
    assert (spec.distribution, spec.version) == ("esq-acme", "1.2.3")
    assert by_name(plugins, "esq-acme").status == "loaded"


def test_core_registers_its_pipelines_through_its_own_entry_point():
    plugins = load_plugins(environ={})
    core = by_name(plugins, "esq")
    assert (core.source, core.distribution, core.plugin.__name__) == ("entry point", "esq-core", "esq.builtin.plugin")
    assert plugins.registry("pipelines").spec("demo").distribution == "esq-core"


def test_two_distributions_giving_one_name_is_an_error_naming_both(install_plugin):
    install_plugin("esq-one", "1.0", "one_plugin", QUANTIZER_PLUGIN.format(name="vq"))
    install_plugin("esq-two", "2.0", "two_plugin", QUANTIZER_PLUGIN.format(name="vq"))
    with pytest.raises(PluginError) as error:
        load_plugins().registry("quantizers")
    assert str(error.value) == (
        "Conflicting plugins found for `quantizers`: 'vq' provided by: esq-one 1.0, esq-two 2.0"
    )


def test_the_same_plugin_loaded_twice_is_not_a_conflict(install_plugin):
    module = install_plugin("esq-acme", "1.0", "acme_twice", QUANTIZER_PLUGIN.format(name="acme"))
    plugins = load_plugins([module])
    assert plugins.registry("quantizers").names() == ["acme"]


def test_a_plugin_failing_to_import_warns_once_and_the_others_load(install_plugin, caplog):
    install_plugin("esq-broken", "0.1", "broken_plugin", "raise RuntimeError('boom')")
    install_plugin("esq-good", "1.0", "good_plugin", QUANTIZER_PLUGIN.format(name="good"))
    with caplog.at_level(logging.WARNING, logger="esq.plugins"):
        plugins = load_plugins()
    assert plugins.registry("quantizers").names() == ["good"]
    broken = by_name(plugins, "esq-broken")
    assert broken.status == "failed" and "RuntimeError: boom" in broken.error
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "'esq-broken' (esq-broken 0.1) failed to import: RuntimeError: boom" in warnings[0]


def test_strict_mode_makes_a_broken_plugin_fatal(install_plugin):
    install_plugin("esq-broken", "0.1", "broken_strict", "import no_such_module_xyz")
    with pytest.raises(PluginError, match="No module named 'no_such_module_xyz'.*ESQ_STRICT_PLUGINS"):
        load_plugins(environ={"ESQ_STRICT_PLUGINS": "1"})


def test_a_misspelt_hook_is_reported_with_the_right_name(install_plugin):
    code = "from esq import hookimpl\n@hookimpl\ndef esq_quantiser():\n    return []\n"
    install_plugin("esq-typo", "1.0", "typo_plugin", code)
    plugins = load_plugins()
    assert "unknown hook 'esq_quantiser' (did you mean 'esq_quantizers'?)" in by_name(plugins, "esq-typo").error
    with pytest.raises(PluginError, match="did you mean 'esq_quantizers'"):
        load_plugins(environ={"ESQ_STRICT_PLUGINS": "1"})


def test_a_hook_with_a_wrong_signature_is_rejected(tmp_path):
    path = tmp_path / "bad_signature.py"
    path.write_text("from esq import hookimpl\n@hookimpl\ndef esq_metrics(size):\n    return []\n")
    with pytest.raises(PluginError, match="bad_signature"):
        load_plugins([str(path)])


def test_a_blocked_plugin_is_not_imported(install_plugin):
    install_plugin("esq-acme", "1.0", "acme_blocked", "raise RuntimeError('must not be imported')")
    plugins = load_plugins(["no:esq-acme"])
    assert by_name(plugins, "esq-acme").status == "blocked"


def test_blocking_by_distribution_name_with_underscores_works(install_plugin):
    install_plugin("esq-acme", "1.0", "acme_under", QUANTIZER_PLUGIN.format(name="acme"), entry_point="acme")
    assert load_plugins(["no:esq_acme"]).registry("quantizers").names() == []


def test_core_builtins_can_be_blocked_like_any_plugin():
    plugins = load_plugins(["no:esq-core"])
    assert by_name(plugins, "esq").status == "blocked"
    assert "demo" not in plugins.registry("pipelines")


def test_plugin_file_loads_for_one_call():
    assert "echo" in load_plugins([FAKE]).registry("pipelines")
    assert "echo" not in load_plugins([]).registry("pipelines")


def test_esq_plugins_variable_loads_and_blocks(install_plugin):
    install_plugin("esq-acme", "1.0", "acme_env", QUANTIZER_PLUGIN.format(name="acme"))
    plugins = load_plugins(environ={"ESQ_PLUGINS": f"{FAKE}, no:esq-acme"})
    assert plugins.registry("quantizers").names() == ["rounding"]


def test_plugin_module_by_name_records_its_module(install_plugin):
    install_plugin("esq-acme", "1.0", "acme_module", QUANTIZER_PLUGIN.format(name="acme"))
    plugins = load_plugins(["no:esq-acme", "acme_module"])
    assert (plugins.registry("quantizers").spec("acme").distribution, by_name(plugins, "acme_module").version) == (
        "esq-acme",
        "1.0",
    )


def test_missing_plugin_file_is_one_clear_error(tmp_path):
    with pytest.raises(PluginError, match=r"--plugin .*nope\.py: no such file"):
        load_plugins([str(tmp_path / "nope.py")])


def test_missing_plugin_module_is_one_clear_error():
    with pytest.raises(PluginError, match="no module named 'no_such_plugin_mod'"):
        load_plugins(["no_such_plugin_mod"])


def test_plugin_raising_at_import_names_it_and_the_cause(tmp_path):
    path = tmp_path / "raises.py"
    path.write_text("raise ValueError('bad config in plugin')\n")
    with pytest.raises(PluginError, match=r"raises\.py: error importing plugin: ValueError: bad config in plugin"):
        load_plugins([str(path)])


def test_hook_returning_the_wrong_spec_type_names_the_plugin(tmp_path):
    path = tmp_path / "wrong_type.py"
    path.write_text(
        "from esq import MetricSpec, hookimpl\n@hookimpl\ndef esq_quantizers():\n"
        "    return [MetricSpec(name='m', factory=dict, summary='s', kind='similarity', higher_is_better=True)]\n"
    )
    with pytest.raises(PluginError, match="'wrong_type'.*returned MetricSpec, expected QuantizerSpec"):
        load_plugins([str(path)]).registry("quantizers")


def test_hook_raising_names_the_plugin(tmp_path):
    path = tmp_path / "hook_raises.py"
    path.write_text("from esq import hookimpl\n@hookimpl\ndef esq_metrics():\n    raise KeyError('x')\n")
    with pytest.raises(PluginError, match="'hook_raises'.*failed in esq_metrics\\(\\): KeyError"):
        load_plugins([str(path)]).registry("metrics")


def test_an_installed_plugin_whose_hook_raises_is_skipped_with_a_warning(install_plugin, caplog):
    install_plugin(
        "esq-bad-hook", "0.2", "bad_hook", "from esq import hookimpl\n@hookimpl\ndef esq_metrics():\n    1 / 0\n"
    )
    install_plugin("esq-good", "1.0", "good_beside_bad", QUANTIZER_PLUGIN.format(name="good"))
    with caplog.at_level(logging.WARNING, logger="esq.plugins"):
        plugins = load_plugins()
    assert plugins.registry("quantizers").names() == ["good"] and plugins.registry("metrics").names() == []
    assert "'esq-bad-hook' (esq-bad-hook) failed in esq_metrics(): ZeroDivisionError" in caplog.text
    assert by_name(plugins, "esq-bad-hook").status == "failed"


def test_an_installed_plugin_returning_an_invalid_spec_is_skipped(install_plugin):
    install_plugin("esq-bad-spec", "0.2", "bad_spec", QUANTIZER_PLUGIN.format(name="Bad-Name"))
    plugins = load_plugins()
    assert "QuantizerSpec name 'Bad-Name' is invalid" in by_name(plugins, "esq-bad-spec").error
    assert plugins.registry("quantizers").names() == []


def test_functions_without_hookimpl_are_not_hooks(tmp_path):
    path = tmp_path / "undecorated.py"
    path.write_text(QUANTIZER_PLUGIN.format(name="plain").replace("@hookimpl\n", ""))
    plugins = load_plugins([str(path)])
    assert "plain" not in plugins.registry("quantizers") and by_name(plugins, "undecorated").hooks == []


def test_blocking_a_name_that_is_not_installed_warns_with_a_suggestion(install_plugin, caplog):
    install_plugin("esq-acme", "1.0", "acme_warn", QUANTIZER_PLUGIN.format(name="acme"))
    with caplog.at_level(logging.WARNING, logger="esq.plugins"):
        load_plugins(["no:esq-acne"])
    assert "--plugin no:esq-acne blocks nothing: no installed plugin is called 'esq-acne' (did you mean 'esq-acme'" in (
        caplog.text
    )


def test_errors_from_esq_plugins_name_the_variable(tmp_path):
    with pytest.raises(PluginError, match=r"^ESQ_PLUGINS entry '.*gone\.py': no such file"):
        load_plugins(environ={"ESQ_PLUGINS": str(tmp_path / "gone.py")})


def test_optional_hooks_are_not_reported_as_unknown(tmp_path):
    path = tmp_path / "optional.py"
    path.write_text("from esq import hookimpl\n@hookimpl(optionalhook=True)\ndef esq_future_hook():\n    pass\n")
    assert by_name(load_plugins([str(path)]), "optional").status == "loaded"
