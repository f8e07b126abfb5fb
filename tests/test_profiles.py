import pytest

from replbook.experiments.minkpp import PARAMS
from replbook.profiles import ChapterParams, Param, ParameterError, resolve

SPEC = ChapterParams(
    slug="demo",
    params=(Param("epochs", int, "Training epochs.", 1, 10), Param("rate", float, "A rate.", 0.0, 1.0),
            Param("ks", list, "Fractions.", 0.01, 1.0, item=float), Param("mode", str, "How.", choices=("a", "b"))),
    defaults={"smoke": dict(epochs=1, rate=0.5, ks=[0.2], mode="a"),
              "cpu": dict(epochs=5, rate=0.1, ks=[0.1, 0.2], mode="b")},
)


def test_none_takes_the_profile_value_and_overrides_win():
    assert resolve(SPEC, "cpu", {"epochs": None, "rate": 0.3}) == {
        "profile": "cpu", "epochs": 5, "rate": 0.3, "ks": [0.1, 0.2], "mode": "b"}


def test_ints_are_accepted_for_floats_and_tuples_for_lists():
    p = resolve(SPEC, "smoke", {"rate": 1, "ks": (1, 0.5)})
    assert p["rate"] == 1.0 and isinstance(p["rate"], float)
    assert p["ks"] == [1.0, 0.5]


@pytest.mark.parametrize("profile, overrides, message", [
    ("gpu", {}, "unknown profile 'gpu' for demo; choose one of smoke, cpu"),
    ("smoke", {"epochs": 0}, r"parameter 'epochs' must lie in \[1, 10\]; got 0"),
    ("smoke", {"epochs": 2.5}, "parameter 'epochs' must be of type int"),
    ("smoke", {"epochs": True}, "parameter 'epochs' must be of type int"),
    ("smoke", {"rate": "high"}, "parameter 'rate' must be of type float"),
    ("smoke", {"ks": [0.2, 1.5]}, r"parameter 'ks' must lie in \[0.01, 1.0\]; got 1.5"),
    ("smoke", {"ks": []}, "parameter 'ks' must not be empty"),
    ("smoke", {"mode": "c"}, r"parameter 'mode' must be one of \['a', 'b'\]"),
    ("smoke", {"epoch": 3}, "demo has no parameter 'epoch'; its parameters are epochs, rate, ks, mode"),
])
def test_bad_values_raise_one_sentence_naming_the_parameter(profile, overrides, message):
    with pytest.raises(ParameterError, match=message):
        resolve(SPEC, profile, overrides)


def test_profile_defaults_are_checked_when_declared():
    with pytest.raises(ValueError, match="defaults must set exactly"):
        ChapterParams("demo", SPEC.params, {"smoke": {"epochs": 1}})
    with pytest.raises(ParameterError, match="'epochs' must lie"):
        ChapterParams("demo", SPEC.params, {"smoke": dict(epochs=99, rate=0.5, ks=[0.2], mode="a")})


def test_missing_asset_stops_resolution():
    from replbook.assets import AssetUnavailable

    with pytest.raises(AssetUnavailable, match=r"asset .wikimia. \(data_manifests/wikimia.yaml\)"):
        resolve(PARAMS, "paper")


def test_minkpp_declares_every_profile():
    assert set(PARAMS.defaults) == {"smoke", "cpu", "paper"}


def test_profiles_state_only_their_changes_from_smoke():
    diff = ChapterParams("demo", SPEC.params, {"smoke": dict(epochs=1, rate=0.5, ks=[0.2], mode="a"),
                                               "cpu": dict(epochs=5)})
    assert diff.defaults["cpu"] == {"epochs": 5, "rate": 0.5, "ks": [0.2], "mode": "a"}
    assert diff.changes("cpu") == {"epochs": 5}
    with pytest.raises(ValueError, match="unknown parameters"):
        ChapterParams("demo", SPEC.params, {"smoke": diff.defaults["smoke"], "cpu": dict(epoch=5)})


def test_a_validator_and_asset_function_run_before_any_work():
    def validate(p):
        if p["mode"] == "b" and p["epochs"] < 3:
            raise ParameterError("parameters 'mode' and 'epochs': mode b needs at least 3 epochs.")

    spec = ChapterParams("demo", SPEC.params, SPEC.defaults, validate=validate,
                         assets={"cpu": lambda p: [f"no-such-asset-{p['mode']}"]})
    with pytest.raises(ParameterError, match="mode b needs at least 3 epochs"):
        resolve(spec, "cpu", {"epochs": 2})
    assert spec.assets_for(resolve(spec, "cpu", check_assets=False)) == ["no-such-asset-b"]
    from replbook.assets import AssetUnavailable

    with pytest.raises(AssetUnavailable, match="no-such-asset-b"):
        resolve(spec, "cpu")
