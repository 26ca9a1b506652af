from __future__ import annotations

import msgspec
import pytest

from sluicegate import ConfigurationError
from sluicegate.requests.config import (
    SETTINGS_FIELDS,
    RequestAdmissionConfig,
    RequestResourceOverride,
    RequestResourceSettings,
)
from sluicegate.requests.identity import (
    ModelEndpoint,
    RequestResourceKey,
    RequestResourceResolver,
)


def test_defaults_are_valid_and_documented() -> None:
    settings = RequestResourceSettings()
    assert 0 < settings.decrease_factor < 1
    assert settings.has_rate_window is False
    # every field is described in the class docstring
    doc = RequestResourceSettings.__doc__ or ""
    missing = [name for name in SETTINGS_FIELDS if name not in doc]
    assert missing == []


def test_override_struct_mirrors_every_setting() -> None:
    # A setting added to RequestResourceSettings but not to the override could never be
    # overridden per resource.
    override_fields = set(RequestResourceOverride.__struct_fields__)
    assert set(SETTINGS_FIELDS) <= override_fields


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"decrease_factor": 1.0}, "decrease_factor"),
        ({"decrease_factor": 0.0}, "decrease_factor"),
        ({"increase_step": 0}, "increase_step"),
        ({"successes_until_increase": 0}, "successes_until_increase"),
        ({"startup_ramp_seconds": -1.0}, "startup_ramp_seconds"),
        ({"initial_limit": 0}, "initial_limit"),
        ({"clamp": 0}, "clamp"),
        ({"cooldown_seconds": float("nan")}, "cooldown_seconds"),
        ({"window_seconds": 10.0}, "window_seconds"),  # a window without a rate
        ({"requests_per_window": 0}, "requests_per_window"),
        ({"circuit_backoff_multiplier": 0.5}, "circuit_backoff_multiplier"),
        (
            {"circuit_open_seconds": 60.0, "circuit_max_open_seconds": 10.0},
            "circuit_max_open_seconds",
        ),
        ({"cooldown_admission": "pause"}, "cooldown_admission"),
    ],
)
def test_invalid_settings_name_the_field(kwargs, field) -> None:
    with pytest.raises(ConfigurationError) as info:
        RequestResourceSettings(**kwargs)
    assert info.value.field == field
    assert info.value.fix


def test_from_dict_rejects_unknown_keys_with_did_you_mean() -> None:
    with pytest.raises(ConfigurationError) as info:
        RequestAdmissionConfig.from_dict({"defaults": {"decrease_facter": 0.5}})
    assert info.value.field == "defaults.decrease_facter"
    assert "did you mean 'decrease_factor'" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        RequestAdmissionConfig.from_dict({"default": {}})
    assert "did you mean 'defaults'" in str(info.value)


def test_from_dict_prefixes_nested_validation_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        RequestAdmissionConfig.from_dict(
            {"resources": [{"provider": "p"}, {"provider": "p", "increase_step": 0}]}
        )
    assert info.value.field == "resources[1].increase_step"
    with pytest.raises(ConfigurationError) as info:
        RequestAdmissionConfig.from_dict({"defaults": {"increase_step": "two"}})
    assert info.value.field == "defaults.increase_step"


def test_override_merged_with_defaults_is_validated_up_front() -> None:
    # Valid on its own, but below the defaults' circuit_open_seconds once merged.
    with pytest.raises(ConfigurationError) as info:
        RequestAdmissionConfig(
            defaults=RequestResourceSettings(circuit_open_seconds=5.0),
            resources=(RequestResourceOverride(provider="p", circuit_max_open_seconds=1.0),),
        )
    assert info.value.field == "resources[0].circuit_max_open_seconds"


def test_override_selector_rules() -> None:
    with pytest.raises(ConfigurationError, match="exactly one of alias or provider"):
        RequestResourceOverride()
    with pytest.raises(ConfigurationError, match="exactly one of alias or provider"):
        RequestResourceOverride(alias="a", provider="p")
    with pytest.raises(ConfigurationError, match="model_id only narrows"):
        RequestResourceOverride(alias="a", model_id="m")


def test_settings_for_applies_most_specific_override_last() -> None:
    resolver = RequestResourceResolver(
        [ModelEndpoint(name="judge", provider="openai", model_id="gpt-4o", max_parallel_requests=8)]
    )
    config = RequestAdmissionConfig.from_dict(
        {
            "defaults": {"decrease_factor": 0.5, "increase_step": 1},
            "resources": [
                {"provider": "openai", "model_id": "gpt-4o", "domain": "chat", "clamp": 3},
                {"provider": "openai", "increase_step": 2, "clamp": 7},
                {"alias": "judge", "increase_step": 4},
            ],
        }
    )
    chat = config.settings_for(RequestResourceKey("openai", "gpt-4o", "chat"), resolver)
    assert (chat.decrease_factor, chat.increase_step, chat.clamp) == (0.5, 4, 3)
    embed = config.settings_for(RequestResourceKey("openai", "gpt-4o", "embedding"), resolver)
    assert (embed.increase_step, embed.clamp) == (4, 7)
    other = config.settings_for(RequestResourceKey("other", "m", "chat"), resolver)
    assert other == config.defaults


def test_check_selectors_reports_unknown_alias() -> None:
    resolver = RequestResourceResolver(
        [ModelEndpoint(name="judge", provider="openai", model_id="gpt-4o", max_parallel_requests=8)]
    )
    config = RequestAdmissionConfig(resources=(RequestResourceOverride(alias="juge"),))
    with pytest.raises(ConfigurationError) as info:
        config.check_selectors(resolver)
    assert info.value.field.startswith("resources[0]")
    assert "did you mean 'judge'" in str(info.value)


def test_toml_round_trip() -> None:
    text = """
    [request_admission.defaults]
    decrease_factor = 0.5
    requests_per_window = 100
    window_seconds = 60.0

    [[request_admission.resources]]
    provider = "openai"
    model_id = "gpt-4o"
    tokens_per_window = 10000
    """
    config = RequestAdmissionConfig.from_toml(text, table="request_admission")
    assert config.defaults.requests_per_window == 100
    assert config.resources[0].values() == {"tokens_per_window": 10000}
    again = RequestAdmissionConfig.from_dict(config.to_dict())
    assert again == config
    assert msgspec.json.decode(msgspec.json.encode(config), type=RequestAdmissionConfig) == config
    with pytest.raises(ConfigurationError, match="table 'request_admision' is missing"):
        RequestAdmissionConfig.from_toml(text, table="request_admision")
    with pytest.raises(ConfigurationError, match="toml"):
        RequestAdmissionConfig.from_toml("[[[", table=None)
