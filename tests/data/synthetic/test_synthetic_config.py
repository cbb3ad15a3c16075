"""The synthetic generator's config: validation, type normalization and the hash that names
cached datasets."""

from __future__ import annotations

import pytest

from vidistill.data.synthetic import FORMAT_VERSION, SyntheticConfig, config_hash


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="num_segment_classes"):
        SyntheticConfig(num_classes=10, num_segment_classes=11)
    with pytest.raises(ValueError, match="spurious_label_rate"):
        SyntheticConfig(spurious_label_rate=-0.1)
    with pytest.raises(ValueError, match="min_frames"):
        SyntheticConfig(min_frames=50, max_frames=40)
    with pytest.raises(TypeError, match="num_train"):
        SyntheticConfig(num_train=2.5)
    # 150 and 150.0 (YAML, CLI) are the same config and name the same cached dataset
    assert config_hash(SyntheticConfig(mean_frames=150)) == config_hash(
        SyntheticConfig(mean_frames=150.0)
    )
    assert config_hash(SyntheticConfig(seed=1)) != config_hash(SyntheticConfig(seed=2))


def test_the_default_cache_key_is_pinned():
    """The hash names every cached dataset: a change regenerates everyone's data. Change these
    values only together with a deliberate change of the defaults or of FORMAT_VERSION."""
    assert FORMAT_VERSION == 2
    assert config_hash(SyntheticConfig()) == "7aeb7013ca"
